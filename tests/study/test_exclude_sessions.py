"""folds.exclude_sessions: sessions a study never reads, neither to train nor to test, so an inner
validation study (exclude S05, test S04) chooses settings without touching the real held-out one."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf

from convmem.config import load_config
from convmem.corpus.manifest import write_manifest
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ConfigError, ManifestError
from convmem.run_config import RunConfig
from tests.conftest import make_tone

SESSIONS = ("S01", "S02", "S03", "S04", "S05")


@pytest.fixture
def manifest(tmp_path) -> Path:
    """Two dialogues per session, two speakers each; S05's audio is then deleted: a study that
    opened it would fail."""
    dialogues = []
    for s in SESSIONS:
        for k in range(2):
            wav = tmp_path / f"{s}_{k}.wav"
            sf.write(wav, make_tone(2.0), 16000)
            utts = [Utterance(f"{s}_{k}_u{i}", f"{s}_{'AB'[i % 2]}", i * 0.8, i * 0.8 + 0.6, "neu") for i in range(2)]
            dialogues.append(Dialogue(f"{s}_{k}", s, utts, audio=wav))
    path = write_manifest(tmp_path / "manifest.jsonl", dialogues)
    for k in range(2):
        (tmp_path / f"S05_{k}.wav").unlink()
    return path


def _cfg(manifest: Path, *overrides: str) -> RunConfig:
    return load_config(RunConfig, None, [f"corpus.manifest={manifest}", *overrides])


def test_an_excluded_session_is_never_read_and_the_folds_are_the_inner_ones(manifest, tmp_path):
    from convmem.study.folds import corpus_dialogues, fold_info, study_folds

    with pytest.raises(ManifestError, match="S05_0.wav"):  # without the exclusion its audio is opened
        corpus_dialogues(_cfg(manifest), tmp_path / "unused")
    cfg = _cfg(manifest, "folds.exclude_sessions=[S05]", "folds.test_sessions=[S04]")
    dialogues = corpus_dialogues(cfg, tmp_path / "unused")
    assert sorted({d.session for d in dialogues}) == ["S01", "S02", "S03", "S04"]
    (fold,) = study_folds(cfg, dialogues)
    info = fold_info(fold, {d.dialogue_id: d for d in dialogues})
    assert (info["test_sessions"], info["train_sessions"]) == (["S04"], ["S01", "S02", "S03"])
    assert (info["train_dialogues"], info["test_dialogues"]) == (6, 2)
    # without test_sessions every remaining session is a fold, S05 none of them
    all_folds = study_folds(_cfg(manifest, "folds.exclude_sessions=[S05]"), dialogues)
    assert [f.name for f in all_folds] == ["loso_S01", "loso_S02", "loso_S03", "loso_S04"]


def test_the_study_and_its_final_model_get_no_excluded_dialogue(manifest, tmp_path, monkeypatch):
    import convmem.study.evaluation as evaluation
    import convmem.study.report as report
    import convmem.study.training as training
    from convmem.study.experiment import run_experiment
    from convmem.study.final_model import train_final

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(training, "train_fold_models",
                        lambda cfg, train, *a, **k: seen.extend(("train", d.session) for d in train))
    monkeypatch.setattr(evaluation, "evaluate_fold",
                        lambda cfg, model, methods, test, *a, **k: seen.extend(("test", d.session) for d in test))
    monkeypatch.setattr(report, "finish_report", lambda *a, **k: None)
    cfg = _cfg(manifest, "folds.exclude_sessions=[S05]", "folds.test_sessions=[S04]", "eval.methods=[none]")
    run_experiment(cfg, tmp_path / "run")
    assert sorted(set(seen)) == [("test", "S04"), ("train", "S01"), ("train", "S02"), ("train", "S03")]
    seen.clear()
    train_final(cfg, tmp_path / "run")
    assert sorted({s for _, s in seen}) == ["S01", "S02", "S03", "S04"]


def test_exclusions_are_checked(manifest, tmp_path):
    from convmem.study.folds import corpus_dialogues

    with pytest.raises(ConfigError, match="folds.exclude_sessions: unknown session 'S09'"):
        corpus_dialogues(_cfg(manifest, "folds.exclude_sessions=[S05, S09]"), tmp_path / "unused")
    with pytest.raises(ConfigError, match="folds.exclude_sessions: 'S04' is also in folds.test_sessions"):
        _cfg(manifest, "folds.exclude_sessions=[S04, S05]", "folds.test_sessions=[S04]")


def test_results_name_the_sessions_never_read():
    from convmem.eval.plots import run_description

    meta = {"corpus": "c", "folds": ["loso_S04"], "seeds": [0], "n_limit": 64, "excluded_sessions": ["S05"]}
    assert run_description({"meta": meta}).endswith("| n_limit 64 | sessions never read: S05")
