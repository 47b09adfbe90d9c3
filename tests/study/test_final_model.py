from __future__ import annotations

import pytest

from convmem.config import load_config
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ConfigError
from convmem.run_config import RunConfig


@pytest.fixture
def calls(monkeypatch):
    import convmem.corpus.manifest as manifest
    import convmem.study.training as training

    seen = []
    dialogues = [Dialogue(f"d{s}", s, [Utterance(f"{s}u", f"{s}A", 0.0, 1.0, "neu")]) for s in ("S1", "S2")]
    monkeypatch.setattr(manifest, "read_manifest", lambda path, labels=None, **kw: dialogues)
    monkeypatch.setattr(training, "train_fold_models",
                        lambda cfg, train, model_dir, methods, cache, fold_info=None: seen.append(
                            (sorted(d.session for d in train), methods, fold_info)) or model_dir)
    return seen


@pytest.mark.parametrize("overrides, want", [
    ([], ["none", "window", "classifier", "mal", "window@vad"]),
    (["final_methods=[window,dpm,mal]"], ["window", "dpm", "mal"]),
])
def test_final_model_trains_every_session_and_the_chosen_parts(tmp_path, calls, overrides, want):
    from convmem.study.final_model import train_final

    cfg = load_config(RunConfig, None, ["corpus.manifest=m.jsonl", "eval.methods=[none,window,classifier,mal]",
                                        "eval.vad_methods=[window]", *overrides])
    assert train_final(cfg, tmp_path) == tmp_path / "final_model"
    ((sessions, methods, info),) = calls
    assert sessions == ["S1", "S2"] and methods == want
    assert info == {"fold": "final", "train_sessions": ["S1", "S2"], "test_sessions": []}


def test_unknown_final_method_is_named():
    with pytest.raises(ConfigError, match="final_methods: unknown method 'dmp'"):
        load_config(RunConfig, None, ["final_methods=[window,dmp]"])
