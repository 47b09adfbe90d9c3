"""A study says how often each DPM method wrote: utterances written of those it could write and
optimizer steps, summed over dialogues and processes, into results.json meta "dpm_writes" and a
line per method in report.md, so a surprise gate that never closes shows a rate of 1.0."""

from __future__ import annotations

import copy
import json

import pytest

from convmem.audio.io import write_wav
from convmem.bundle import load_bundle
from convmem.corpus.types import Dialogue, Utterance
from convmem.eval.results import ResultsSchemaError, validate_results
from convmem.memory.temp_lora import DPMConfig
from convmem.run_config import RunConfig
from convmem.study.evaluation import evaluate_method
from convmem.study.report import write_outputs
from convmem.study.sharding import merge_sums
from convmem.tokenizers.utterance_encoder import UtteranceEncoder
from tests.eval.conftest import LABELS, META
from tests.model_fixture import speech_recording, tiny_bundle

# surprise_k this high: after the warm-up writes no loss clears mean + k * std, so the gate closes
VARIANTS = {"dpm_gated": {"stepping": "surprise", "surprise_k": 100.0},
            "dpm_steps2": {"steps_per_write": 2}}
METHODS = ("dpm", *VARIANTS)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpm_writes")
    bundle = load_bundle(tiny_bundle(tmp))
    bundle.dpm_config = DPMConfig(rank=4, alpha=4, lr=1e-2)  # small and quick; the counts are the point
    dialogues = []
    for k, n in enumerate((6, 5)):
        wave, spans = speech_recording(n, seed=10 + k)
        wav = write_wav(tmp / f"d{k}.wav", wave)
        # every turn labelled, so every utterance the memory read is a scored row
        utts = [Utterance(f"d{k}u{i}", "AB"[i % 2], s, e, LABELS[i % 4]) for i, (s, e) in enumerate(spans)]
        dialogues.append(Dialogue(f"d{k}", "S1", utts, audio=wav))
    table = UtteranceEncoder.of(bundle).dialogues(dialogues, progress=False)
    cfg = RunConfig()
    cfg.eval.dpm_variants = copy.deepcopy(VARIANTS)
    runs = {m: evaluate_method(cfg, bundle, m, dialogues, table, "f1") for m in METHODS}
    return cfg, bundle, dialogues, table, runs


def test_each_dpm_method_counts_its_writes_and_they_recompute(setup):
    _, _, dialogues, _, runs = setup
    n_utts = sum(len(d.utterances) for d in dialogues)
    eligible = n_utts - len(dialogues)  # a dialogue's first turn has nothing to be written from
    counts = {m: cost["dpm_writes"] for m, (_, cost) in runs.items()}
    for m, (rows, cost) in runs.items():
        c = counts[m]
        assert (c["utterances"], c["eligible"]) == (n_utts, eligible), m
        # a write's loss is in its row exactly when it wrote (every turn is scored here)
        assert c["written"] == sum(r["write_loss"] is not None for r in rows), m
    assert counts["dpm"]["written"] == eligible and counts["dpm"]["steps"] == eligible
    gated = counts["dpm_gated"]
    assert 0 < gated["written"] < counts["dpm"]["written"] and gated["steps"] == gated["written"]
    assert counts["dpm_steps2"]["written"] == eligible and counts["dpm_steps2"]["steps"] == 2 * eligible


def test_counts_sum_over_processes(setup):
    cfg, bundle, dialogues, table, runs = setup
    shards = [evaluate_method(cfg, bundle, "dpm_gated", dialogues, table, "f1", rank=r, world=2)[1]["dpm_writes"]
              for r in range(2)]
    assert shards[0] != shards[1]  # each process read its own dialogue
    assert merge_sums("dpm_writes", *shards) == runs["dpm_gated"][1]["dpm_writes"]


def test_write_rates_reach_results_and_report(setup, tmp_path):
    _, _, _, _, runs = setup
    fold_dir = tmp_path / "folds" / "f1"
    fold_dir.mkdir(parents=True)
    for m, (rows, cost) in runs.items():
        (fold_dir / f"predictions_{m}.json").write_text(json.dumps({"rows": rows, "cost": cost}))
    write_outputs(tmp_path, ["f1"], list(METHODS), LABELS, {**META, "folds": ["f1"]}, 50, 0)
    results = json.loads((tmp_path / "results.json").read_text())
    validate_results(results)
    writes = results["meta"]["dpm_writes"]
    assert set(writes) == set(METHODS)
    for m, (_, cost) in runs.items():
        c = cost["dpm_writes"]
        assert writes[m] == {**c, "rate": pytest.approx(c["written"] / c["eligible"])}
    assert writes["dpm"]["rate"] == 1.0 and writes["dpm_gated"]["rate"] < 1.0
    section = (tmp_path / "report.md").read_text().split("## What the memories change")[1].split("\n## ")[0]
    g = writes["dpm_gated"]
    assert (f"| SLLM-DPM (temporary LoRA memory) (`dpm`) | {writes['dpm']['written']} / {writes['dpm']['eligible']} "
            f"| 100.00 |") in section
    assert f"| `dpm_gated` | {g['written']} / {g['eligible']} | {100 * g['rate']:.2f} | {g['steps']} |" in section


def test_schema_rejects_write_counts_that_do_not_add_up(setup, tmp_path):
    _, _, _, _, runs = setup
    fold_dir = tmp_path / "folds" / "f1"
    fold_dir.mkdir(parents=True)
    rows, cost = runs["dpm_gated"]
    (fold_dir / "predictions_dpm_gated.json").write_text(json.dumps({"rows": rows, "cost": cost}))
    write_outputs(tmp_path, ["f1"], ["dpm_gated"], LABELS, {**META, "folds": ["f1"]}, 50, 0)
    results = json.loads((tmp_path / "results.json").read_text())
    validate_results(results)
    for field, value, match in (("rate", 1.0, "rate"), ("steps", 0, "steps"),
                                ("written", 10**6, "written <= eligible")):
        bad = copy.deepcopy(results)
        bad["meta"]["dpm_writes"]["dpm_gated"][field] = value
        with pytest.raises(ResultsSchemaError, match=rf"meta\.dpm_writes\.dpm_gated.*{match}"):
            validate_results(bad)


def test_a_memory_that_does_not_write_carries_no_write_counts(setup):
    cfg, bundle, dialogues, table, _ = setup
    _, cost = evaluate_method(cfg, bundle, "window", dialogues[:1], table, "f1")
    assert "dpm_writes" not in cost


def test_rates_of_sums():
    from convmem.memory.dpm_writes import rates

    assert rates({"utterances": 3, "eligible": 0, "written": 0, "steps": 0})["rate"] is None
    assert rates({"utterances": 9, "eligible": 8, "written": 2, "steps": 4})["rate"] == 0.25
