"""`convmem ablate`: cells, the shared corpus guard, and a tiny ablation end to end (marks off/on,
two synthetic seeds pooled) whose tables recompute from the cells' predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from convmem.errors import ConfigError
from convmem.study.ablation import AblationConfig, cells, load_ablation

TINY_RUN = {
    "name": "tiny", "threads": 1, "final": False,
    "corpus": {"synth_preset": "tiny"},
    "eval": {"bootstrap": 100, "batch_size": 4, "methods": ["majority", "none", "window"], "vad_methods": []},
    "tokenizer": {"kind": "kmeans", "options": {"codebook_size": 32}},
    "slm": {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "n_limit": 128,
            "max_position_embeddings": 2048},
    "train": {"epochs": 1, "lr": 3.0e-3, "objective": "dense", "checkpoint_every": 50},
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _ablation(tmp: Path, **kw) -> Path:
    _write(tmp / "run.yaml", TINY_RUN)
    spec = {"name": "abl", "out": str(tmp / "out"), "run": "run.yaml", "bootstrap": 100,
            "compare": {"marks_off": ["slm.prosody_marks=false"], "marks_on": ["slm.prosody_marks=true"]},
            "pool": {"s3": ["corpus.synth_seed=3"], "s4": ["corpus.synth_seed=4"]}, **kw}
    return _write(tmp / "ablation.yaml", spec)


def test_cells_are_settings_times_pool_with_overrides_in_order(tmp_path):
    cfg, run = load_ablation(_ablation(tmp_path, overrides=["threads=1"]))
    assert run == tmp_path / "run.yaml"
    got = [(c.name, c.overrides) for c in cells(cfg)]
    assert got[0] == ("marks_off__s3", ("threads=1", "corpus.synth_seed=3", "slm.prosody_marks=false", "final=false"))
    assert [n for n, _ in got] == ["marks_off__s3", "marks_off__s4", "marks_on__s3", "marks_on__s4"]


@pytest.mark.parametrize("bad, match", [
    ({"compare": {}}, "at least one setting"),
    ({"compare": {"a/b": [], "c": []}}, "must be non-empty"),
    ({"pool": {}}, "at least one member"),
])
def test_bad_ablation_configs_are_named(bad, match):
    base = {"run": "x.yaml", "compare": {"a": [], "b": []}}
    with pytest.raises(ConfigError, match=match):
        AblationConfig(**{**base, **bad})


def test_a_missing_run_config_and_a_setting_that_changes_the_corpus_are_refused(tmp_path):
    from convmem.study.ablation import run_ablation

    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ConfigError, match="run: nope.yaml not found"):
        load_ablation(_write(tmp_path / "elsewhere" / "a.yaml", {"run": "nope.yaml", "compare": {"a": [], "b": []}}))
    cfg, run = load_ablation(_ablation(tmp_path, compare={"a": ["corpus.synth_seed=1"], "b": []}))
    with pytest.raises(ConfigError, match="a setting changes the corpus"):
        run_ablation(cfg, run)
    assert not (tmp_path / "out" / "cells").exists()  # refused before anything ran


@pytest.mark.slow
def test_tiny_ablation_end_to_end_pools_seeds_and_resumes(tmp_path):
    from convmem.eval.predictions import read_predictions_csv
    from convmem.eval.results import recompute_check, validate_results

    spec = _ablation(tmp_path)
    cmd = [sys.executable, "-m", "convmem", "ablate", str(spec), "--set", "eval.bootstrap=100"]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "cell 4/4: marks_on × s4" in res.stdout
    out = tmp_path / "out"
    summary = json.loads((out / "ablation.json").read_text())
    assert list(summary["settings"]) == ["marks_off", "marks_on"]
    # one corpus per seed, shared by both settings; none generated inside a cell
    assert (out / "shared" / "s3" / "corpus" / "manifest.jsonl").is_file()
    assert not any((out / "cells").glob("*/corpus"))
    for setting, marks in (("marks_off", False), ("marks_on", True)):
        results = json.loads((out / setting / "results.json").read_text())
        validate_results(results)
        assert recompute_check(results, out / setting / "predictions.csv") == []
        assert results["meta"]["prosody_marks"] is marks
        assert ("speaker's earlier turns" in results["meta"]["method_labels"]["none"]) is marks
        pooled = read_predictions_csv(out / setting / "predictions.csv")
        cell_n = sum(int((read_predictions_csv(out / "cells" / f"{setting}__{m}" / "predictions.csv").method == "none").sum())
                     for m in ("s3", "s4"))
        row = summary["settings"][setting]["methods"]["none"]
        assert row["all"]["n"] == cell_n == int((pooled.method == "none").sum())
        assert {d.split("/")[0] for d in pooled.dialogue} == {"s3", "s4"}
        assert row["vs_window"]["delta_wa"] == pytest.approx(
            row["all"]["wa"] - summary["settings"][setting]["methods"]["window"]["all"]["wa"])
        assert "vs_none" not in row and summary["settings"][setting]["methods"]["window"]["vs_none"]["ci"] is not None
    between = summary["between_settings"]["marks_on"]["none"]
    on, off = (summary["settings"][s]["methods"]["none"]["all"]["wa"] for s in ("marks_on", "marks_off"))
    assert between["against"] == "marks_off" and between["delta_wa"] == pytest.approx(on - off)
    assert np.isfinite(between["mcnemar_p"])
    report = (out / "ablation.md").read_text()
    assert "## marks_on against marks_off" in report and "`none`" in report
    # a rerun resumes: nothing is trained again and the summary is the same
    model = next((out / "cells" / "marks_on__s4" / "folds").glob("*/model/slm"))
    stamp = {p: p.stat().st_mtime_ns for p in model.rglob("*") if p.is_file()}
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in model.rglob("*") if p.is_file()} == stamp
    assert json.loads((out / "ablation.json").read_text())["settings"] == summary["settings"]
    # one setting is a study pooled over the seeds: the same cells, no between-settings table
    res = subprocess.run(cmd[:5] + ["compare={marks_off: [slm.prosody_marks=false]}"] + cmd[5:],
                         capture_output=True, text=True, env={**os.environ})
    assert res.returncode == 0, res.stderr[-3000:]
    one = json.loads((out / "ablation.json").read_text())
    assert list(one["settings"]) == ["marks_off"] and one["between_settings"] == {}
    assert one["settings"]["marks_off"] == summary["settings"]["marks_off"]
    assert " against " not in (out / "ablation.md").read_text()


@pytest.mark.parametrize("name, settings", [("ablation_synth.yaml", {"marks_off", "marks_on"}),
                                            ("ablation_ravdess.yaml", {"marks_off", "marks_on"}),
                                            ("ablation_synth_prosody_codes.yaml", {"marks_off"})])
def test_shipped_ablation_configs_resolve_every_cell(name, settings):
    from convmem.study.ablation import cell_config

    path = Path(__file__).resolve().parents[2] / "configs" / name
    cfg, run = load_ablation(path)
    assert cfg.compare.keys() == settings
    for cell in cells(cfg):
        rc = cell_config(run, cell)
        assert rc.slm.prosody_marks == (cell.setting == "marks_on") and rc.final is False
        assert {"none", "window", "dpm", "mal"} <= set(rc.eval.methods)
    assert path.read_text().startswith("# convmem ")  # the header says how to run it


def test_the_context_ablation_compares_emotion_tokens_with_every_reference_and_memory():
    from convmem.study.ablation import cell_config

    path = Path(__file__).resolve().parents[2] / "configs" / "ablation_context_ravdess.yaml"
    cfg, run = load_ablation(path)
    assert cfg.compare.keys() == {"tokens_none", "tokens_predicted"} and "inertia" in cfg.references
    for cell in cells(cfg):
        rc = cell_config(run, cell)
        tokens = cell.setting.split("_", 1)[1]
        assert rc.train.emotion_tokens == rc.eval.emotion_tokens == tokens and rc.final is False
        assert {"none", "window", "inertia", "dpm", "dpm_inertia", "mal", "mal_inertia"} <= set(rc.eval.methods)
        assert ("dpm_emotion" in rc.eval.methods) == (tokens == "predicted")
        if tokens == "predicted":
            assert rc.eval.dpm_variants["dpm_emotion"] == {"write_emotion": "confidence"}
    assert path.read_text().startswith("# convmem ")
