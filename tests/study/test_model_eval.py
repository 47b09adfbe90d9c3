"""`convmem eval-model`: a model trained by `convmem train` on sessions S01-S02 of the tiny synthetic
corpus, scored on session S03 as another manifest (about 45 s in all on 2 cores)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from convmem.bundle import model_fingerprint
from convmem.cli import main
from convmem.eval.predictions import read_predictions_csv
from convmem.eval.results import recompute_check, validate_results
from tests.eval.test_results import _close, _metrics

pytestmark = pytest.mark.slow  # about 45 s on 2 cores, most of it training the model once

LABELS = ("neu", "hap", "sad", "ang")
TRAIN = [
    "name=tiny", "threads=1", "tokenizer.options={codebook_size: 32}",
    "slm.hidden_size=32", "slm.num_layers=1", "slm.num_heads=2", "slm.intermediate_size=64",
    "slm.n_limit=128", "slm.max_position_embeddings=2048", "train.epochs=1",
    "classifier_train.epochs=1", "classifier_train.batch_size=8", "classifier_train.progress=false",
    "classifier={n_layers: 1, n_heads: 2}", "dpm.rank=4", "dpm.alpha=4", "dpm.n_r=48", "mal_train.epochs=1",
]
# a relabelling of the held-out session that makes `ang` its majority class; the model's training
# majority stays `neu` (S01-S02 of seed 3: neu 46, hap 4, sad 7, ang 9)
SWAP = {"neu": "ang", "ang": "neu", "hap": "sad", "sad": "hap", None: None}
DEFAULT_METHODS = ["majority", "none", "window", "window_full", "classifier", "dpm", "mal", "inertia", "dpm_inertia",
                   "mal_inertia"]


def _lines(manifest: Path, session: str) -> list[dict]:
    return [d for d in map(json.loads, manifest.read_text().splitlines()) if d["session"] == session]


def _write(path: Path, dialogues: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in dialogues))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    assert main(["synth", str(out), "--preset", "tiny", "--seed", "3"]) == 0
    return out / "manifest.jsonl"


@pytest.fixture(scope="module")
def held_out(corpus) -> Path:
    """Session S03 alone, as its own manifest (beside the audio it names)."""
    return _write(corpus.parent / "s03.jsonl", _lines(corpus, "S03"))


@pytest.fixture(scope="module")
def relabelled(corpus) -> Path:
    """S03 with every gold label swapped (SWAP): same audio, other labels, another majority."""
    dialogues = _lines(corpus, "S03")
    for d in dialogues:
        for u in d["utterances"]:
            u["emotion"] = SWAP[u["emotion"]]
    return _write(corpus.parent / "s03_relabelled.jsonl", dialogues)


@pytest.fixture(scope="module")
def model(tmp_path_factory, corpus) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("model") / "model"
    assert main(["train", "-", "--out", str(out), f"corpus.manifest={corpus}", *TRAIN, "--sessions", "S01", "S02"]) == 0
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _eval(model, manifest, out, cache, *args) -> int:
    torch.set_num_threads(1)
    return main(["eval-model", str(model), str(manifest), "--out", str(out), "--cache", str(cache),
                 "--bootstrap", "200", *args])


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, model, held_out, cache) -> Path:
    out = tmp_path_factory.mktemp("eval") / "s03"
    assert _eval(model, held_out, out, cache, "--name", "tiny synthetic, session S03") == 0
    return out


def _rows(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_train_records_its_label_counts_sessions_and_speakers(model, corpus):
    training = json.loads((model / "bundle.json").read_text())["training"]
    assert training["label_counts"] == {"neu": 46, "hap": 4, "sad": 7, "ang": 9}  # seeded corpus
    assert training["sessions"] == ["S01", "S02"] and training["dialogues"] == 4
    assert training["speakers"] == ["S01_A", "S01_B", "S02_A", "S02_B"]


def test_default_scores_every_memory_and_the_training_majority(evaluated, held_out, model, cache):
    results = json.loads((evaluated / "results.json").read_text())
    assert list(results["methods"]) == DEFAULT_METHODS
    assert results["meta"]["folds"] == ["whole_manifest"] and results["meta"]["n_limit"] == 128
    gold = Counter(u["emotion"] for d in _lines(held_out, "S03") for u in d["utterances"] if u["emotion"])
    rows = _rows(evaluated)
    for m in DEFAULT_METHODS:  # every scored utterance of both dialogues, once per memory
        assert sorted(r["utterance"] for r in rows if r["method"] == m) == sorted(
            u["id"] for d in _lines(held_out, "S03") for u in d["utterances"] if u["emotion"])
    assert sum(gold.values()) == 33 and results["methods"]["dpm"]["buckets"]["all"]["n_dialogues"] == 2
    majority = [r for r in rows if r["method"] == "majority"]
    assert {r["predicted"] for r in majority} == {"neu"}
    assert float(majority[0]["prob_neu"]) == pytest.approx(46 / 66)
    assert results["methods"]["majority"]["buckets"]["all"]["wa"] == pytest.approx(gold["neu"] / 33)
    assert results["baseline"]["reference"] == "majority" and "dpm" in results["baseline"]["tests"]
    cost = json.loads((evaluated / "cost.json").read_text())
    assert set(cost) == set(DEFAULT_METHODS) and cost["dpm"]["utterances"] == 33
    # the audio was read by the model's own saved tokenizer, its codes cached under its fingerprint
    from convmem.tokenizers.base import load_tokenizer

    assert [p.name for p in cache.iterdir()] == [load_tokenizer(model / "tokenizer").fingerprint[:16]]


def test_results_follow_the_schema_and_recompute_from_the_predictions(evaluated):
    results = json.loads((evaluated / "results.json").read_text())
    validate_results(results)
    assert recompute_check(results, evaluated / "predictions.csv") == []
    rows = _rows(evaluated)
    for m in DEFAULT_METHODS:  # and by hand, from the CSV alone
        sel = [r for r in rows if r["method"] == m]
        ours, stored = _metrics(sel), results["methods"][m]["buckets"]["all"]
        assert stored["n"] == ours["n"] == 33 and stored["confusion"] == ours["confusion"]
        assert all(_close(stored[k], ours[k]) for k in ("wa", "ua", "wf1")), m
    assert len(read_predictions_csv(evaluated / "predictions.csv")) == len(rows) == 33 * len(DEFAULT_METHODS)


def test_report_names_the_corpus_and_the_model(evaluated, model, held_out):
    report = (evaluated / "report.md").read_text()
    fingerprint = model_fingerprint(model)
    assert report.startswith("# Emotion recognition in long conversations: tiny synthetic, session S03\n")
    assert f"Model: `tiny / final` at `{model}` (fingerprint `{fingerprint[:16]}`)" in report
    assert f"manifest `{held_out}`" in report and "(sessions S01, S02)" in report
    assert "## Table 1" in report and "Majority class of the training sessions" in report
    meta = json.loads((evaluated / "results.json").read_text())["meta"]
    assert meta["model"]["fingerprint"] == fingerprint and meta["manifest"] == str(held_out)
    assert meta["corpus"] == "tiny synthetic, session S03" and meta["config"] == "eval-model"
    assert (evaluated / "plots" / "accuracy_vs_history.png").stat().st_size > 1000


def test_gold_labels_change_no_prediction(tmp_path, model, relabelled, evaluated, cache):
    """The same audio with every label swapped: the same predictions from every memory (the majority
    row included: its class is the training majority, not the manifest's), only the scores move."""
    out = tmp_path / "relabelled"
    assert _eval(model, relabelled, out, cache, *[a for m in DEFAULT_METHODS for a in ("--memory", m)]) == 0
    before, after = _rows(evaluated), _rows(out)
    key = lambda r: (r["method"], r["utterance"])  # noqa: E731
    before, after = sorted(before, key=key), sorted(after, key=key)
    assert [key(r) for r in before] == [key(r) for r in after]
    for a, b in zip(before, after):
        assert a["predicted"] == b["predicted"], key(a)
        assert [a[f"prob_{k}"] for k in LABELS] == [b[f"prob_{k}"] for k in LABELS], key(a)
        assert SWAP[a["gold"]] == b["gold"]
    majority = json.loads((out / "results.json").read_text())["methods"]["majority"]["buckets"]["all"]
    assert majority["wa"] == pytest.approx(10 / 33)  # S03 has 10 `ang` turns, relabelled `neu`


def test_vad_segmentation_scores_the_same_gold_turns(tmp_path, model, held_out, cache):
    out = tmp_path / "vad"
    assert _eval(model, held_out, out, cache, "--memory", "none", "--memory", "none@vad") == 0
    rows = _rows(out)
    utts = lambda m: sorted(r["utterance"] for r in rows if r["method"] == m)  # noqa: E731
    assert utts("none@vad") == utts("none") and len(utts("none")) == 33
    cost = json.loads((out / "cost.json").read_text())
    assert 0 <= cost["none@vad"]["unmatched_gold_utterances"] <= 33


def test_rerun_resumes_and_a_changed_setting_is_refused(tmp_path, evaluated, model, held_out, cache, capsys):
    out = tmp_path / "again"
    shutil.copytree(evaluated, out)
    done = out / "folds" / "whole_manifest" / "predictions_dpm.json"
    stamp = done.stat().st_mtime_ns
    assert _eval(model, held_out, out, cache, "--memory", "dpm", "--memory", "none") == 0
    assert done.stat().st_mtime_ns == stamp  # reused, not recomputed
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["dpm", "none"]
    first = json.loads((evaluated / "results.json").read_text())
    assert results["methods"]["dpm"]["buckets"]["all"] == first["methods"]["dpm"]["buckets"]["all"]
    capsys.readouterr()
    assert _eval(model, held_out, out, cache, "--memory", "dpm", "--seed", "1") == 2
    assert "holds an evaluation of another model, manifest or settings (differs at: seed)" in capsys.readouterr().err


def test_older_model_without_label_counts_has_no_majority_row(tmp_path, model, held_out, cache, capsys):
    old = tmp_path / "old_model"
    shutil.copytree(model, old)
    info = json.loads((old / "bundle.json").read_text())
    del info["training"]
    (old / "bundle.json").write_text(json.dumps(info))
    from convmem.bundle import read_model_info
    from convmem.study.model_eval import offered_methods

    # an older model records neither its label counts (majority row) nor its speaker transitions
    # (the inertia memories): neither is offered
    assert offered_methods(old, read_model_info(old)) == [m for m in DEFAULT_METHODS[1:] if "inertia" not in m]
    assert offered_methods(model, read_model_info(model)) == DEFAULT_METHODS
    out = tmp_path / "out"
    assert _eval(old, held_out, out, cache, "--memory", "none") == 0
    assert "note: No majority-class row" in capsys.readouterr().err
    assert "No majority-class row:" in (out / "report.md").read_text()
    assert _eval(old, held_out, tmp_path / "out2", cache, "--memory", "majority") == 2
    err = capsys.readouterr().err
    assert "--memory majority:" in err and "never taken from the test manifest" in err
    assert not (tmp_path / "out2").exists()


def test_dpm_variants_the_model_was_evaluated_with_are_offered(tmp_path, model, held_out, cache):
    variant = tmp_path / "variant_model"
    shutil.copytree(model, variant)
    info = json.loads((variant / "bundle.json").read_text())
    info["config"]["eval"]["dpm_variants"] = {"dpm_surprise": {"stepping": "surprise"}}
    (variant / "bundle.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    assert _eval(variant, held_out, out, cache, "--memory", "dpm_surprise") == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results["methods"]) == ["dpm_surprise"] and results["methods"]["dpm_surprise"]["buckets"]["all"]["n"] == 33


def test_a_training_speaker_seen_again_is_said(tmp_path, model, corpus, cache):
    seen = _write(corpus.parent / "s02.jsonl", _lines(corpus, "S02")[:1])
    out = tmp_path / "s02"
    assert _eval(model, seen, out, cache, "--memory", "none") == 0
    caveat = json.loads((out / "results.json").read_text())["meta"]["caveat"]
    assert "2 speaker id(s) of this manifest are also ids of training speakers (e.g. S02_A)" in caveat


def _broken_model(tmp_path: Path, model: Path, how: str) -> Path:
    bad = tmp_path / f"model_{how}"
    shutil.copytree(model, bad)
    if how == "no_slm":
        shutil.rmtree(bad / "slm")
    elif how == "bad_bundle":
        (bad / "bundle.json").write_text("{not json")
    elif how == "bad_weights":
        (bad / "slm" / "model.safetensors").write_bytes(b"\0" * 64)
    elif how == "no_mal":
        shutil.rmtree(bad / "mal")
    return bad


@pytest.mark.parametrize("case,message", [
    ("missing_model", "not a convmem model directory (no bundle.json)"),
    ("no_slm", "model directory is incomplete: missing slm/"),
    ("bad_bundle", "bundle.json: unreadable"),
    ("bad_weights", "slm/model.safetensors: damaged or changed since training"),
    ("no_mal", "--memory mal: {model} does not offer it (it offers: majority, none, window, window_full, classifier, dpm"),
    ("unknown_memory", "--memory dmp: {model} does not offer it"),
    ("majority_vad", "--memory majority@vad: {model} does not offer it"),
    ("missing_manifest", "{manifest}: manifest not found"),
    ("bad_json", "{manifest}:2: not valid JSON"),
    ("unknown_label", "{manifest}:1"),
    ("no_labels", "{manifest}: no utterance has an emotion label"),
    ("out_not_empty", "{out}: folder is not empty and was not made by `convmem eval-model` (it holds notes.txt)"),
])
def test_bad_input_is_named_exits_2_and_writes_nothing(tmp_path, model, held_out, cache, capsys, case, message):
    manifest, memories, out = held_out, ["--memory", "mal"], tmp_path / "out"
    if case == "missing_model":
        model = tmp_path / "nowhere"
    elif case in ("no_slm", "bad_bundle", "bad_weights", "no_mal"):
        model = _broken_model(tmp_path, model, case)
    elif case in ("unknown_memory", "majority_vad"):
        memories = ["--memory", "none", "--memory", "dmp" if case == "unknown_memory" else "majority@vad"]
    elif case == "missing_manifest":
        manifest = held_out.parent / "absent.jsonl"
    else:
        dialogues = _lines(held_out, "S03")
        for d in dialogues:
            d["audio"] = str(held_out.parent / d["audio"])  # absolute: the manifest moves to tmp_path
        if case == "unknown_label":
            dialogues[0]["utterances"][0]["emotion"] = "fru"
        if case == "no_labels":
            for d in dialogues:
                for u in d["utterances"]:
                    u["emotion"] = None
        manifest = tmp_path / "m.jsonl"
        _write(manifest, dialogues)
        if case == "bad_json":
            manifest.write_text(manifest.read_text().splitlines()[0] + "\n{oops\n")
        if case == "out_not_empty":
            out.mkdir()
            (out / "notes.txt").write_text("mine")
    assert _eval(model, manifest, out, cache, *memories) == 2
    err = capsys.readouterr().err
    assert err.startswith("convmem eval-model: error: ")
    assert message.format(model=model, manifest=manifest, out=out) in err, err
    if case == "out_not_empty":
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
    else:
        assert not out.exists()


def test_vad_memories_need_each_dialogues_audio(tmp_path):
    from convmem.corpus.types import Dialogue, Utterance
    from convmem.errors import ManifestError
    from convmem.study.model_eval import _check_dialogues

    turns = [Utterance("u0", "A", 0.0, 1.0, "neu", audio=tmp_path / "u0.wav")]
    dialogues = [Dialogue("d0", "S1", turns, audio=None)]
    _check_dialogues(dialogues, tmp_path / "m.jsonl", ["none", "dpm"])
    with pytest.raises(ManifestError, match="dialogue 'd0' has no whole-dialogue \"audio\", which @vad methods"):
        _check_dialogues(dialogues, tmp_path / "m.jsonl", ["none", "dpm@vad"])


def test_help_lists_the_command_without_importing_torch():
    code = ("import sys; from convmem.cli import build_parser; assert 'eval-model' in build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'transformers', 'peft', 'numpy') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"
    with pytest.raises(SystemExit) as exc:
        main(["eval-model", "--help"])
    assert exc.value.code == 0
