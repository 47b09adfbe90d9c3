"""`convmem predict` never overwrites its input, its other output or a file it did not write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from convmem.cli import main
from tests.model_fixture import speech_recording, tiny_bundle


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_bundle(tmp_path_factory.mktemp("model"))


@pytest.fixture
def call(tmp_path):
    wave, _ = speech_recording(2, seed=8)
    path = tmp_path / "call.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    return path


def _predict(model_dir, call, *args):
    return main(["predict", str(model_dir), str(call), "--memory", "none", "--speakers", "none", "--quiet", *args])


def test_plot_onto_the_input_recording_is_refused(model_dir, call, tmp_path, capsys):
    before = call.read_bytes()
    assert _predict(model_dir, call, "--out", str(tmp_path / "t.csv"), "--plot", str(call)) == 2
    err = capsys.readouterr().err
    assert f"--plot {call}: is the input AUDIO" in err and "Traceback" not in err
    # not even when the user says --overwrite
    assert _predict(model_dir, call, "--out", str(tmp_path / "t.csv"), "--plot", str(call), "--overwrite") == 2
    assert call.read_bytes() == before
    assert not (tmp_path / "t.csv").exists()


def test_out_and_plot_on_one_file_are_refused(model_dir, call, tmp_path, capsys):
    out = tmp_path / "t.json"
    assert _predict(model_dir, call, "--out", str(out)) == 0
    timeline = out.read_bytes()
    assert _predict(model_dir, call, "--out", str(out), "--plot", str(out)) == 2
    assert "--out" in capsys.readouterr().err
    assert out.read_bytes() == timeline


def test_a_users_file_is_kept_unless_overwrite_and_our_own_is_replaced(model_dir, call, tmp_path, capsys):
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    assert _predict(model_dir, call, "--out", str(mine), "--no-plot") == 2
    assert "notes.json: exists and was not written by convmem" in capsys.readouterr().err
    assert json.loads(mine.read_text()) == {"my": "notes"}
    picture = tmp_path / "holiday.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\nnot ours")
    assert _predict(model_dir, call, "--out", str(tmp_path / "t.csv"), "--plot", str(picture)) == 2
    assert picture.read_bytes() == b"\x89PNG\r\n\x1a\nnot ours"
    # convmem's own outputs (json, csv, png) are replaced by a rerun
    for out in (tmp_path / "t.json", tmp_path / "t.csv"):
        assert _predict(model_dir, call, "--out", str(out)) == 0
        assert _predict(model_dir, call, "--out", str(out)) == 0
    assert _predict(model_dir, call, "--out", str(mine), "--no-plot", "--overwrite") == 0
    assert "utterances" in json.loads(mine.read_text())


def test_an_output_inside_the_model_directory_is_refused(model_dir, call, capsys):
    assert _predict(model_dir, call, "--out", str(model_dir / "bundle.json"), "--no-plot", "--overwrite") == 2
    assert "is inside the model directory" in capsys.readouterr().err
    assert json.loads((model_dir / "bundle.json").read_text())["format"] == "convmem-model"


def test_timeline_json_is_strict(model_dir, call, tmp_path):
    out = tmp_path / "t.json"
    assert _predict(model_dir, call, "--out", str(out), "--no-plot") == 0
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in a timeline"))
    assert all(np.isfinite(list(u["probs"].values())).all() for u in json.loads(out.read_text())["utterances"])
