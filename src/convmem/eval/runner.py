"""The experiment runner: one config → corpus → LOSO folds → per fold: tokenizer fitted on the
training sessions only → emotion SLM, classifier and MAL adapter trained → every listed method
streamed over the held-out dialogues → predictions → results.json, report.md, plots.

Resumable and safe: every stage leaves one artifact written atomically (a model part, a per-method
predictions file); a rerun skips what is there, so a killed run continues where it stopped and ends
with the same results.json. results.json holds no wall-clock figures for the same reason: timings go
to cost.json and the report.

Scale-out: under `accelerate launch`, evaluation shards the held-out dialogues across processes
(rank r takes dialogues r, r+W, ...); the main process merges the shards in dialogue order, so the
merged predictions equal a single process's. Training stages run on the main process only.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from convmem.audio.relative_prosody import MARKS_PER_TURN
from convmem.config import to_dict
from convmem.corpus.types import Dialogue
from convmem.errors import ConfigError, ConvmemError
from convmem.eval.majority import METHOD as MAJORITY
from convmem.eval.majority import label_counts, prior_rows, training_prior
from convmem.eval.run_folder import claim_run_folder
from convmem.fileio import atomic_write_json, atomic_write_text
from convmem.run_config import BASE_METHODS, RunConfig

VAD_SUFFIX = "@vad"


@dataclass
class Stage:
    """Progress callback payload: which fold and stage the run is in."""

    fold: str
    stage: str
    index: int
    total: int


def method_list(cfg: RunConfig) -> list[str]:
    """The methods a run evaluates: eval.methods, then "<m>@vad" for each of eval.vad_methods.

    `majority` (eval/majority.py) is a reference row, not a memory: eval.methods only."""
    memories = set(BASE_METHODS) | set(cfg.eval.dpm_variants)
    for key, listed, known in (("eval.methods", cfg.eval.methods, memories | {MAJORITY}),
                               ("eval.vad_methods", cfg.eval.vad_methods, memories)):
        bad = [m for m in listed if m not in known]
        if bad:
            raise ConfigError(f"{key}: unknown method {bad[0]!r} (known: {', '.join(sorted(known))}; "
                              "DPM variants are declared in eval.dpm_variants)")
    return list(cfg.eval.methods) + [f"{m}{VAD_SUFFIX}" for m in cfg.eval.vad_methods]


def run_experiment(cfg: RunConfig, out: str | Path | None = None,
                   on_stage: Callable[[Stage], None] | None = None) -> Path:
    """Run (or resume) the study `cfg` in `out` (default cfg.out_dir). Returns the output folder."""
    from convmem.parallel import dist_info

    out = Path(out or cfg.out_dir)
    methods = method_list(cfg)
    rank, world = dist_info()
    if rank == 0:
        claim_run_folder(out, cfg)
    apply_threads(cfg)
    dialogues = corpus_dialogues(cfg, out / "corpus", rank)
    folds = _folds(cfg, dialogues)
    stages_per_fold = 2 + len(methods)
    total = len(folds) * stages_per_fold + 1
    step = 0

    def stage(fold: str, name: str) -> None:
        nonlocal step
        step += 1
        if on_stage is not None and rank == 0:
            on_stage(Stage(fold, name, step, total))

    by_id = {d.dialogue_id: d for d in dialogues}
    for fold in folds:
        fdir = out / "folds" / fold.name
        train = [by_id[i] for i in fold.train_ids]
        test = [by_id[i] for i in fold.test_ids]
        stage(fold.name, "train models")
        if rank == 0:
            train_fold_models(cfg, train, fdir / "model", methods, out / "cache", fold_info=fold_info(fold, by_id))
        _barrier(world)
        prior = training_prior(train, cfg.corpus.labels) if MAJORITY in methods else None
        evaluate_fold(cfg, fdir / "model", methods, test, fdir, fold.name, out / "cache", prior, rank, world,
                      on_method=lambda m, name=fold.name: stage(name, f"eval {m}"))
        stage(fold.name, "done")
    stage("all", "report")
    if rank == 0:
        finish_report(cfg, out, [f.name for f in folds], methods)
    return out


def apply_threads(cfg: RunConfig) -> None:
    """`threads` of the config, for every command that trains or evaluates (run, train)."""
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)


def fold_info(fold, by_id) -> dict:
    return {
        "fold": fold.name,
        "test_sessions": list(fold.test_sessions),
        "train_sessions": sorted({by_id[i].session for i in fold.train_ids}),
        "train_dialogues": len(fold.train_ids),
        "test_dialogues": len(fold.test_ids),
    }


# ---------------------------------------------------------------- corpus and folds

def corpus_dialogues(cfg: RunConfig, synth_dir: Path, rank: int = 0) -> list[Dialogue]:
    """The config's corpus: its manifest(s), or the synthetic preset generated once into `synth_dir`."""
    from convmem.corpus.manifest import read_manifest, read_manifests

    if cfg.corpus.manifest:
        return read_manifests(cfg.corpus.manifests(), labels=cfg.corpus.labels)
    manifest = synth_dir / "manifest.jsonl"
    if not manifest.exists():
        if rank != 0:
            raise ConvmemError("the synthetic corpus must be generated before a multi-process run "
                               "(run `convmem synth` and set corpus.manifest)")
        from convmem.corpus.synth import synthesize_corpus

        synthesize_corpus(synth_dir, preset=cfg.corpus.synth_preset, seed=cfg.corpus.synth_seed)
    return read_manifest(manifest, labels=cfg.corpus.labels)


def _folds(cfg: RunConfig, dialogues: list[Dialogue]):
    from convmem.corpus.splits import check_speaker_disjoint, loso_folds, predefined_fold

    if cfg.folds.scheme == "official":
        return [predefined_fold(dialogues, allow_speaker_overlap=cfg.folds.allow_speaker_overlap)]
    folds = loso_folds(dialogues)
    if cfg.folds.test_sessions is not None:
        wanted = set(cfg.folds.test_sessions)
        known = {s for f in folds for s in f.test_sessions}
        missing = sorted(wanted - known)
        if missing:
            raise ConfigError(f"folds.test_sessions: unknown session {missing[0]!r} (corpus has {', '.join(sorted(known))})")
        folds = [f for f in folds if set(f.test_sessions) & wanted]
    for f in folds:
        check_speaker_disjoint(dialogues, f)
    return folds


# ---------------------------------------------------------------- codes

def _encode(tokenizer, dialogues: list[Dialogue], cache_root: Path) -> dict[str, np.ndarray]:
    from convmem.tokenizers.cache import CodeCache, encode_dialogues

    return encode_dialogues(tokenizer, dialogues, CodeCache(cache_root))


def _marks(wanted: bool, dialogues: list[Dialogue], cache_root: Path) -> dict[str, np.ndarray] | None:
    """Prosody marks of every utterance when the model reads them, else None."""
    if not wanted:
        return None
    from convmem.tokenizers.cache import CodeCache, measure_marks

    return measure_marks(dialogues, cache=CodeCache(cache_root))


def _frames(wanted: bool, tokenizer, dialogues: list[Dialogue]) -> dict[str, np.ndarray] | None:
    """Continuous frames of every utterance when the model reads them (slm.audio_input=frames), else
    None. The tokenizer caches them by audio content (whisper-kmeans), so folds share one encoding."""
    if not wanted:
        return None
    from convmem.tokenizers.cache import dialogue_frames

    return dialogue_frames(tokenizer, dialogues)


def _coded(dialogue_id: str, source: Dialogue, codes: dict[str, np.ndarray], marks: dict[str, np.ndarray] | None,
           frames: dict[str, np.ndarray] | None = None):
    """`source`'s utterances as a CodedDialogue called `dialogue_id`, from per-utterance-id codes (and
    marks, and frames)."""
    from convmem.slm.stream import CodedDialogue

    per_utt = lambda table: None if table is None else [table[u.id] for u in source.utterances]  # noqa: E731
    return CodedDialogue(dialogue_id, [(codes[u.id], u.emotion) for u in source.utterances],
                         per_utt(marks), per_utt(frames))


def coded_dialogues(dialogues: list[Dialogue], codes: dict[str, np.ndarray],
                    marks: dict[str, np.ndarray] | None = None, frames: dict[str, np.ndarray] | None = None):
    return [_coded(d.dialogue_id, d, codes, marks, frames) for d in dialogues]


def utterance_inputs(vocab, dialogue: Dialogue, codes: dict[str, np.ndarray], marks: dict[str, np.ndarray] | None,
                     frames: dict[str, np.ndarray] | None) -> list:
    """The model input (`UtteranceInput`: ids + frames of a frames model) of each utterance of `dialogue`."""
    pick = lambda table, u: None if table is None else table[u.id]  # noqa: E731
    return [vocab.utterance_input(codes[u.id], pick(marks, u), pick(frames, u)) for u in dialogue.utterances]


def perturbed_coded_dialogues(cfg: RunConfig, tokenizer, train: list[Dialogue], cache_root: Path):
    """`cfg.augment.copies` speaker-perturbed copies of the training dialogues, coded (may be [])."""
    from convmem.tokenizers.cache import CodeCache, encode_perturbed_copies, perturbed_copy_frames

    copies = encode_perturbed_copies(tokenizer, train, cfg.augment, CodeCache(cache_root), marks=cfg.slm.prosody_marks)
    frames = (perturbed_copy_frames(tokenizer, train, cfg.augment) if cfg.slm.reads_frames and copies
              else [None] * len(copies))
    return [_coded(*copy, f) for copy, f in zip(copies, frames)]


# ---------------------------------------------------------------- training a fold's models

def train_fold_models(cfg: RunConfig, train: list[Dialogue], model_dir: Path, methods: list[str],
                      cache_root: Path, fold_info: dict | None = None) -> Path:
    """Fit the tokenizer on `train` only, then train the SLM, classifier and MAL adapter; each part
    is saved into `model_dir` as soon as it exists, and skipped on a rerun."""
    import torch

    from convmem.bundle import BUNDLE_FILE, save_parts
    from convmem.slm.model import build_model, load_model, make_vocab
    from convmem.tokenizers.base import build_tokenizer, load_tokenizer

    torch.manual_seed(cfg.seed)
    labels = tuple(cfg.corpus.labels)
    common = dict(labels=labels, n_limit=cfg.slm.n_limit, config=to_dict(cfg), dpm_config=cfg.dpm,
                  extra={"training": training_summary(train, labels)})
    if (model_dir / "tokenizer").is_dir():
        tokenizer = load_tokenizer(model_dir / "tokenizer")
    else:
        from convmem.tokenizers.cache import CodeCache, fit_on_dialogues

        tokenizer = build_tokenizer(cfg.tokenizer.kind, **cfg.tokenizer.options)
        sessions = sorted({d.session for d in train})
        fit_on_dialogues(tokenizer, train, sessions, cache=CodeCache(cache_root))
        save_parts(model_dir, tokenizer=tokenizer, **common)

    @functools.cache
    def coded():
        # made only when a part is trained: a rerun with every part saved (`convmem eval` on a
        # finished study) does not re-read, re-hash or re-perturb the training audio
        codes = _encode(tokenizer, train, cache_root)
        marks = _marks(cfg.slm.prosody_marks, train, cache_root)
        frames = _frames(cfg.slm.reads_frames, tokenizer, train)
        return (coded_dialogues(train, codes, marks, frames)
                + perturbed_coded_dialogues(cfg, tokenizer, train, cache_root))

    if (model_dir / "slm").is_dir():
        slm, vocab, _ = load_model(model_dir / "slm", merge=True)
    else:
        from convmem.train.loop import train_slm

        vocab = make_vocab(cfg.slm, tokenizer.codebook_size, labels)
        frame_dim = next(f.shape[1] for cd in coded() for f in cd.frames) if cfg.slm.reads_frames else None
        slm = build_model(cfg.slm, vocab, frame_dim)
        slm = train_slm(slm, vocab, coded(), cfg.train, model_dir.parent / "checkpoints" / "slm", resume=True)
        save_parts(model_dir, slm=slm, **common)
        slm, vocab, _ = load_model(model_dir / "slm", merge=True)
    slm.eval()
    for p in slm.parameters():
        p.requires_grad_(False)

    if "classifier" in methods and not (model_dir / "classifier").is_dir():
        from convmem.slm.classifier import EmotionClassifier
        from convmem.slm.stream import dialogue_stream
        from convmem.train.classifier_trainer import train_classifier, windows_from_stream

        windows = [w for cd in coded() for w in windows_from_stream(dialogue_stream(cd, vocab, cfg.train.emotion_tokens), cfg.slm.n_limit)]
        clf = EmotionClassifier.from_slm(slm.get_input_embeddings(), cfg.classifier_config())
        clf = train_classifier(clf, windows, cfg.classifier_train)
        save_parts(model_dir, classifier=clf, **common)

    if any(m == "mal" for m in methods) and not (model_dir / "mal").is_dir():
        from convmem.memory.mal import MALMemory
        from convmem.train.mal_trainer import UtteranceTokens, train_mal

        mal_cfg = cfg.mal_config(vocab.emotion_ids, (vocab.audio_offset, vocab.audio_offset + vocab.codebook_size))
        adapter = MALMemory.build(slm, mal_cfg).adapter
        dialogues = [[UtteranceTokens(x.ids, None if e is None else labels.index(e), x.frames)
                      for x, e in zip(cd.inputs(vocab), cd.emotions)] for cd in coded()]
        marks = (vocab.mark_offset, vocab.size) if vocab.prosody_marks else None
        train_mal(slm, adapter, dialogues, cfg.mal_train, mal_cfg, vocab.audio_end_id, mark_id_range=marks)
        save_parts(model_dir, mal_adapter=adapter, mal_config=mal_cfg, **common)

    if not (model_dir / "MODEL_CARD.md").exists():
        from convmem.model_card import render_card

        save_parts(model_dir, card=render_card(cfg, fold_info or {}, train), **common)
    assert (model_dir / BUNDLE_FILE).exists()
    return model_dir


def training_summary(train: list[Dialogue], labels) -> dict:
    """What a model directory records of its training data (bundle.json "training"): the scored
    utterances per label (so a majority-class row can be scored on any other corpus), and the
    sessions and speakers it heard (so an evaluation can say when they reappear)."""
    return {"label_counts": label_counts(train, labels), "dialogues": len(train),
            "sessions": sorted({d.session for d in train}),
            "speakers": sorted({u.speaker for d in train for u in d.utterances})}


# ---------------------------------------------------------------- evaluation

def evaluate_method(cfg: RunConfig, bundle, method: str, test: list[Dialogue], codes: dict[str, np.ndarray],
                    fold: str, rank: int = 0, world: int = 1, marks: dict[str, np.ndarray] | None = None,
                    frames: dict[str, np.ndarray] | None = None) -> tuple[list[dict], dict]:
    """Stream this process's share of `test` through `method`; returns prediction rows and cost.
    `marks`: each utterance's prosody marks, when the model reads them (`_marks`); `frames`: each
    utterance's continuous frames, when the model reads them (`_frames`).

    Gold labels are read only after the engine has returned, to score.
    """
    import torch

    from convmem.bundle import NO_GRAD_METHODS

    base = method[: -len(VAD_SUFFIX)] if method.endswith(VAD_SUFFIX) else method
    overrides = cfg.eval.dpm_variants.get(base) if base in cfg.eval.dpm_variants else None
    engine = bundle.engine("dpm" if overrides is not None else base, emotion_tokens=cfg.eval.emotion_tokens,
                           **({"dpm_overrides": overrides} if overrides is not None else {}),
                           **({"window_full_limit": cfg.eval.window_full_limit} if base == "window_full" else {}))
    mine = test[rank::world]
    convs = [utterance_inputs(bundle.vocab, d, codes, marks, frames) for d in mine]
    t0 = time.perf_counter()
    if base != method:
        results = [_vad_result(bundle, base, engine, d, conv, cfg.eval.emotion_tokens) for d, conv in zip(mine, convs)]
    else:
        with torch.no_grad() if base in NO_GRAD_METHODS else contextlib.nullcontext():
            results = engine.run(convs, keys=[d.dialogue_id for d in mine], batch_size=cfg.eval.batch_size)
    seconds = time.perf_counter() - t0
    close = getattr(engine.memory, "close", None)
    if close is not None:
        close()
    labels = bundle.labels
    rows = []
    for d, res, conv in zip(mine, results, convs):
        scored = [i for i, u in enumerate(d.utterances) if u.emotion is not None]
        last = scored[-1] if scored else -1
        probs = torch.softmax(torch.from_numpy(res.logits), -1).numpy()
        for i in scored:
            u = d.utterances[i]
            own = len(conv[i]) + 1
            loss = float(res.write_loss[i])
            if np.isnan(res.logits[i]).any():
                # VAD found no speech overlapping this gold utterance: scored as an error (the
                # label after gold), uniform probabilities; cost.json counts these
                probs[i] = 1.0 / len(labels)
                predicted = labels[(labels.index(u.emotion) + 1) % len(labels)]
            else:
                predicted = labels[int(res.logits[i].argmax())]
            rows.append({
                "dialogue": d.dialogue_id, "utterance": u.id, "fold": fold, "method": method, "position": i,
                "gold": u.emotion, "predicted": predicted,
                "probs": [float(p) for p in probs[i]],
                "history_tokens": int(res.history_tokens[i]),
                "long_context": bool(res.history_tokens[i] + own > bundle.n_limit),
                "last_scored": i == last, "write_loss": None if math.isnan(loss) else loss,
                "session": d.session, "speaker": u.speaker,
            })
    n_utts = sum(len(d.utterances) for d in mine)
    audio_s = sum(d.duration for d in mine)
    cost = {"seconds": seconds, "utterances": n_utts, "audio_seconds": audio_s}
    if base != method:
        cost["unmatched_gold_utterances"] = int(sum(np.isnan(r.logits).any(-1).sum() for r in results))
    return rows, cost


def evaluate_fold(cfg: RunConfig, model, methods: list[str], test: list[Dialogue], fdir: Path, fold: str,
                  cache_root: Path, prior: np.ndarray | None = None, rank: int = 0, world: int = 1,
                  on_method: Callable[[str], None] | None = None) -> None:
    """Write `fdir`/predictions_<method>.json for each of `methods` whose file is not there yet.

    model: a loaded Bundle, or its directory (loaded only when some method's file is missing).
    prior: the majority row's class frequencies (eval/majority.py), needed when `methods` lists it.
    on_method(method) is called before each method, done or not (progress)."""
    bundle = None
    for method in methods:
        if on_method is not None:
            on_method(method)
        pred_file = fdir / f"predictions_{method}.json"
        if pred_file.exists():
            continue
        if bundle is None:
            from convmem.bundle import load_bundle

            bundle = load_bundle(model) if isinstance(model, (str, Path)) else model
            codes = _encode(bundle.tokenizer, test, cache_root)
            marks = _marks(bundle.vocab.prosody_marks, test, cache_root)
            frames = _frames(bundle.slm_config.reads_frames, bundle.tokenizer, test)
        if method == MAJORITY:
            rows, cost = _majority(cfg, prior, test[rank::world], codes, fold, bundle.n_limit, marks)
        else:
            rows, cost = evaluate_method(cfg, bundle, method, test, codes, fold, rank, world, marks, frames)
        _write_shard(pred_file, rows, cost, rank, world)


def _majority(cfg: RunConfig, prior: np.ndarray, mine: list[Dialogue], codes: dict[str, np.ndarray],
              fold: str, n_limit: int, marks: dict[str, np.ndarray] | None = None) -> tuple[list[dict], dict]:
    extra = 1 + (cfg.eval.emotion_tokens == "predicted")  # <audio_end> [+ the predicted emotion token]
    own = 0 if marks is None else MARKS_PER_TURN  # an utterance's input: its codes [+ its marks]
    rows = prior_rows(prior, mine, {u.id: len(codes[u.id]) + own for d in mine for u in d.utterances},
                      cfg.corpus.labels, fold, n_limit, extra)
    cost = {"seconds": 0.0, "utterances": sum(len(d.utterances) for d in mine),
            "audio_seconds": sum(d.duration for d in mine)}
    return rows, cost


def _vad_result(bundle, base: str, engine, dialogue: Dialogue, conv, emotion_tokens: str):
    """A DialogueResult over gold utterances from a run over the dialogue's VAD segments.

    history_tokens are those of the gold segmentation (same definition as the engine's), so the
    buckets of `<m>@vad` rows are the gold rows' buckets.
    """
    from convmem.engine.conversation import DialogueResult
    from convmem.eval.segmentation import run_vad_dialogue

    res = run_vad_dialogue(bundle, base, dialogue, engine=engine)
    per_utt = np.array([len(c) + 1 + (emotion_tokens == "predicted") for c in conv], np.int64)
    history = np.concatenate([[0], np.cumsum(per_utt)[:-1]]).astype(np.int64)
    n = len(conv)
    return DialogueResult(logits=res.logits.astype(np.float32), write_loss=np.full(n, np.nan, np.float32),
                          history_tokens=history, window_tokens=np.zeros(n, np.int64), truncated=np.zeros(n, bool))


def _write_shard(path: Path, rows: list[dict], cost: dict, rank: int, world: int) -> None:
    if world == 1:
        atomic_write_json(path, {"rows": rows, "cost": cost}, indent=None)
        return
    shard = path.with_name(f"{path.stem}.rank{rank}of{world}.json")
    atomic_write_json(shard, {"rows": rows, "cost": cost}, indent=None)
    _barrier(world)
    if rank == 0:
        parts = [json.loads(path.with_name(f"{path.stem}.rank{r}of{world}.json").read_text()) for r in range(world)]
        merged = merge_shards([p["rows"] for p in parts])
        total = {"seconds": max(p["cost"]["seconds"] for p in parts),
                 "utterances": sum(p["cost"]["utterances"] for p in parts),
                 "audio_seconds": sum(p["cost"]["audio_seconds"] for p in parts), "processes": world}
        atomic_write_json(path, {"rows": merged, "cost": total}, indent=None)
        for r in range(world):
            path.with_name(f"{path.stem}.rank{r}of{world}.json").unlink()
    _barrier(world)


def merge_shards(shards: list[list[dict]]) -> list[dict]:
    """Interleave rank-strided shards back into dialogue order (rank r held dialogues r, r+W, ...)."""
    by_rank = []
    for rows in shards:
        dialogues: list[list[dict]] = []
        for row in rows:
            if not dialogues or dialogues[-1][0]["dialogue"] != row["dialogue"]:
                dialogues.append([])
            dialogues[-1].append(row)
        by_rank.append(dialogues)
    merged = []
    for i in range(max((len(d) for d in by_rank), default=0)):
        for dialogues in by_rank:
            if i < len(dialogues):
                merged.extend(dialogues[i])
    return merged


def _barrier(world: int) -> None:
    if world > 1:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


# ---------------------------------------------------------------- report

def finish_report(cfg: RunConfig, out: Path, folds: list[str], methods: list[str]) -> Path:
    """Merge every fold's predictions into results.json, predictions.csv, plots and report.md."""
    meta = {
        "corpus": cfg.corpus.title(), "caveat": cfg.corpus.caveat, "folds": folds, "seeds": [cfg.seed],
        "n_limit": cfg.slm.n_limit, "config": cfg.name, "methods": methods, "commit": code_commit(),
    }
    return write_outputs(out, folds, methods, tuple(cfg.corpus.labels), meta, cfg.eval.bootstrap, cfg.seed)


def write_outputs(out: Path, folds: list[str], methods: list[str], labels: tuple[str, ...], meta: dict,
                  bootstrap: int, seed: int) -> Path:
    """`out`/folds/<fold>/predictions_<method>.json of every fold and method -> predictions.csv,
    results.json (`meta` passed through; checked to recompute from the CSV), cost.json, plots and
    report.md in `out`, each written atomically. Returns the report's path."""
    from convmem.eval.predictions import Prediction, table_from_predictions, write_predictions_csv
    from convmem.eval.plots import write_plots
    from convmem.eval.report import write_report
    from convmem.eval.results import ResultsConfig, build_results, recompute_check, write_results_json
    from convmem.eval.stats import BootstrapConfig

    preds, cost = [], {}
    for fold in folds:
        for method in methods:
            blob = json.loads((out / "folds" / fold / f"predictions_{method}.json").read_text())
            for r in blob["rows"]:
                preds.append(Prediction(**{**r, "probs": tuple(r["probs"])}))
            c = cost.setdefault(method, {"seconds": 0.0, "utterances": 0, "audio_seconds": 0.0})
            for k, v in blob["cost"].items():
                if k != "processes":
                    c[k] = c.get(k, 0) + v
    table = table_from_predictions(preds, labels, origin=str(out))
    rcfg = ResultsConfig(bootstrap=BootstrapConfig(n_resamples=bootstrap, seed=seed))
    pred_path = out / "predictions.csv"
    write_predictions_csv(pred_path, table)
    results = build_results(table, meta, rcfg)
    bad = recompute_check(results, pred_path)
    if bad:
        raise ConvmemError(f"{pred_path}: results do not recompute from the predictions: {bad[:5]}")
    write_results_json(out / "results.json", results)
    cost_table = {m: {"seconds_per_utterance": c["seconds"] / max(1, c["utterances"]),
                      "real_time_factor": c["seconds"] / max(1e-9, c["audio_seconds"]),
                      "utterances": c["utterances"],
                      **({"unmatched_gold_utterances": c["unmatched_gold_utterances"]}
                         if "unmatched_gold_utterances" in c else {})} for m, c in cost.items()}
    atomic_write_json(out / "cost.json", cost_table)
    shown = {**results, "cost": cost_table}
    plots = write_plots(shown, out)
    return write_report(shown, out, plots)


def code_commit() -> str:
    """The code version that produced the figures (git commit of the package's checkout)."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return sha or "unknown"


def headline(out: Path) -> str:
    """A short text table of WA/UA/WF1 per method (all utterances and long context)."""
    res = json.loads((Path(out) / "results.json").read_text())
    lines = [f"{'method':<14}{'bucket':<19}{'n':>6}{'WA':>8}{'UA':>8}{'WF1':>8}"]
    for m, blk in res["methods"].items():
        for b in ("all", "long_context", "complete_dialogue"):
            x = blk["buckets"].get(b)
            if not x or not x.get("n"):
                continue
            f = lambda v: "   -  " if v is None else f"{100 * v:6.1f}"  # noqa: E731
            lines.append(f"{m:<14}{b:<19}{x['n']:>6}{f(x['wa']):>8}{f(x['ua']):>8}{f(x['wf1']):>8}")
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)
