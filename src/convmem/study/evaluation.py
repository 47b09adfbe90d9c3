"""One fold's predictions: each method streamed over this process's share of the held-out
dialogues, one `predictions_<method>.json` per method (rows + cost), skipped when it is there.

Methods are memories (memory/registry.py; a DPM variant is DPM with the config's overrides), the
`majority` reference row (eval/majority.py), or either memory kind run on VAD segmentation of
the dialogue audio (`<method>@vad`, eval/segmentation.py). Gold labels are read only after the
engine has returned, to score.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from convmem.corpus.types import Dialogue
from convmem.engine.history import history_counts, long_context
from convmem.eval.majority import METHOD as MAJORITY
from convmem.eval.majority import prior_rows
from convmem.eval.predictions import Prediction
from convmem.study import coding
from convmem.study.methods import split_vad
from convmem.study.sharding import write_shard
from convmem.tokenizers.utterance_encoder import Encoded


def evaluate_method(cfg, bundle, method: str, test: list[Dialogue], table: Encoded, fold: str, rank: int = 0,
                    world: int = 1) -> tuple[list[dict], dict]:
    """Stream this process's share of `test` through `method`; returns prediction rows and cost.
    `table`: every utterance of `test` as the model reads it (tokenizers/utterance_encoder.py)."""
    import torch

    from convmem.memory import registry

    base, vad = split_vad(method)
    spec, overrides = registry.resolve(base, cfg.eval.dpm_variants)
    engine = bundle.engine(spec.name, emotion_tokens=cfg.eval.emotion_tokens, dpm_overrides=overrides,
                           window_full_limit=cfg.eval.window_full_limit)
    mine = test[rank::world]
    convs = [coding.utterance_inputs(bundle.vocab, d, table) for d in mine]
    # what a memory records when asked, per gold-segmented pass (a VAD pass reads segments, not
    # gold utterances): the cost key it travels under -> (the memory's attribute, its recorder)
    recorders = {}
    if not vad:
        from convmem.memory.dpm_writes import WriteTally
        from convmem.memory.mal_probe import MALProbe

        for key, (attr, make) in {"mal_probe": ("probe", MALProbe),
                                  "dpm_writes": ("write_tally", WriteTally)}.items():
            if hasattr(engine.memory, attr):
                recorders[key] = (attr, make())
                setattr(engine.memory, attr, recorders[key][1])
    t0 = time.perf_counter()
    with spec.grad_mode():
        if vad:
            results = [_vad_result(bundle, base, engine, d, conv, cfg.eval.emotion_tokens) for d, conv in zip(mine, convs)]
        else:
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
            loss = float(res.write_loss[i])
            if np.isnan(res.logits[i]).any():
                # VAD found no speech overlapping this gold utterance: scored as an error (the
                # label after gold), uniform probabilities; cost.json counts these
                probs[i] = 1.0 / len(labels)
                predicted = labels[(labels.index(u.emotion) + 1) % len(labels)]
            else:
                predicted = labels[int(res.logits[i].argmax())]
            # the engine's history count; long_context against the bundle's n_limit (not the
            # engine's, which `window_full` raises), so the flag is the same for every method
            seen = int(res.history_tokens[i])
            rows.append(Prediction(
                dialogue=d.dialogue_id, utterance=u.id, fold=fold, method=method, position=i,
                gold=u.emotion, predicted=predicted, probs=tuple(float(p) for p in probs[i]),
                history_tokens=seen, long_context=bool(long_context(seen, len(conv[i]), bundle.n_limit)),
                last_scored=i == last, write_loss=None if math.isnan(loss) else loss,
                session=d.session, speaker=u.speaker).as_row())
    cost = _cost(mine, seconds)
    for key, (attr, recorder) in recorders.items():
        setattr(engine.memory, attr, None)
        cost[key] = recorder.sums()
    if vad:
        cost["unmatched_gold_utterances"] = int(sum(np.isnan(r.logits).any(-1).sum() for r in results))
    return rows, cost


def evaluate_fold(cfg, model, methods: list[str], test: list[Dialogue], fdir: Path, fold: str,
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
            from convmem.tokenizers.cache import CodeCache

            bundle = load_bundle(model) if isinstance(model, (str, Path)) else model
            table = bundle.encoder(CodeCache(cache_root)).dialogues(test)
        if method == MAJORITY:
            rows, cost = _majority(cfg, prior, test[rank::world], table, fold, bundle.n_limit)
        else:
            rows, cost = evaluate_method(cfg, bundle, method, test, table, fold, rank, world)
        write_shard(pred_file, rows, cost, rank, world)


def _cost(mine: list[Dialogue], seconds: float) -> dict:
    return {"seconds": seconds, "utterances": sum(len(d.utterances) for d in mine),
            "audio_seconds": sum(d.duration for d in mine)}


def _majority(cfg, prior: np.ndarray, mine: list[Dialogue], table: Encoded, fold: str, n_limit: int
              ) -> tuple[list[dict], dict]:
    rows = prior_rows(prior, mine, {u.id: table[u.id].n_ids for d in mine for u in d.utterances},
                      cfg.corpus.labels, fold, n_limit, cfg.eval.emotion_tokens == "predicted")
    return rows, _cost(mine, 0.0)


def _vad_result(bundle, base: str, engine, dialogue: Dialogue, conv, emotion_tokens: str):
    """A DialogueResult over gold utterances from a run over the dialogue's VAD segments.

    history_tokens are those of the gold segmentation (the engine's count, `history_counts`), so
    the buckets of `<m>@vad` rows are the gold rows' buckets.
    """
    from convmem.engine.conversation import DialogueResult
    from convmem.eval.segmentation import run_vad_dialogue

    res = run_vad_dialogue(bundle, base, dialogue, engine=engine)
    history = history_counts([len(c) for c in conv], emotion_tokens == "predicted")
    n = len(conv)
    return DialogueResult(logits=res.logits.astype(np.float32), write_loss=np.full(n, np.nan, np.float32),
                          history_tokens=history, window_tokens=np.zeros(n, np.int64), truncated=np.zeros(n, bool))
