"""Loading checks what it loads (bundle.py): each file against the sha256 bundle.json records, every
part readable, every weight finite; a damaged model is a clear error (rc 2), never a traceback or a
timeline of NaN."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from convmem.bundle import BUNDLE_FILE, load_bundle, save_parts
from convmem.cli import main
from convmem.errors import ConvmemError
from tests.model_fixture import LABELS, N_LIMIT, speech_recording, tiny_bundle


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A tiny model directory with a MAL adapter too."""
    from convmem.memory.mal import MALConfig
    from convmem.memory.mal_layer import MALAdapter

    torch.set_num_threads(1)
    path = tiny_bundle(tmp_path_factory.mktemp("model"))
    b = load_bundle(path)
    v = b.vocab
    cfg = MALConfig(emotion_ids=tuple(v.emotion_ids), audio_id_range=(v.audio_offset, v.audio_offset + v.codebook_size))
    adapter = MALAdapter(b.slm.get_input_embeddings().embedding_dim, cfg.memory)
    return save_parts(path, labels=LABELS, n_limit=N_LIMIT, config={}, mal_adapter=adapter, mal_config=cfg)


@pytest.fixture
def model(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "m")


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _without_hashes(model):
    info = json.loads((model / BUNDLE_FILE).read_text())
    info.pop("files")
    (model / BUNDLE_FILE).write_text(json.dumps(info))


def test_bundle_records_every_files_sha256(model):
    files = json.loads((model / BUNDLE_FILE).read_text())["files"]
    assert {"slm/model.safetensors", "tokenizer/codebook.npz", "mal/adapter.safetensors", "mal/mal.json"} <= set(files)
    assert all(len(h) == 64 for h in files.values())


@pytest.mark.parametrize("part", ["slm/model.safetensors", "mal/adapter.safetensors", "tokenizer/codebook.npz"])
def test_a_damaged_file_is_named_by_its_hash(model, part):
    _truncate(model / part)
    with pytest.raises(ConvmemError, match=rf"{part}: damaged or changed since training .* copy the model directory again"):
        load_bundle(model)


@pytest.mark.parametrize("part, says", [
    ("slm/model.safetensors", r"m/slm: cannot be loaded, the model directory is damaged .*retrain it"),
    ("mal/adapter.safetensors", r"m/mal: cannot be loaded, the model directory is damaged .*retrain it"),
    ("tokenizer/codebook.npz", r"codebook.npz: not a valid codebook, damaged or truncated"),
])
def test_a_damaged_part_without_hashes_is_a_clear_error(model, part, says, tmp_path, capsys):
    """An older model directory (no hashes in bundle.json) still loads with a note, and a damaged
    part of one is an error naming it: rc 2 and no traceback from the command line."""
    _without_hashes(model)
    load_bundle(model)
    assert "bundle.json records no file hashes" in capsys.readouterr().err
    _truncate(model / part)
    with pytest.raises(ConvmemError, match=says):
        load_bundle(model)
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, np.float32), 16000)
    assert main(["predict", str(model), str(wav), "--out", str(tmp_path / "t.json"), "--quiet", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and part.split("/")[0] in err


def test_non_finite_weights_are_refused_naming_the_tensor(model):
    b = load_bundle(model)
    with torch.no_grad():
        next(iter(b.slm.parameters())).view(-1)[3] = float("nan")
    save_parts(model, labels=LABELS, n_limit=N_LIMIT, config={}, slm=b.slm)  # hashes recorded anew
    with pytest.raises(ConvmemError, match=r"m/slm: weight .* holds NaN or infinite values .*retrain"):
        load_bundle(model)


def test_non_finite_outputs_never_reach_a_timeline(model):
    from convmem.predict import Predictor

    p = Predictor.load(model, memory="none")
    with torch.no_grad():
        p.bundle.slm.get_input_embeddings().weight.fill_(float("nan"))  # damaged after loading
    wave, _ = speech_recording(2, seed=3)
    with pytest.raises(ConvmemError, match="non-finite emotion scores"):
        p.predict(wave, progress=False)


def test_nan_samples_are_silenced_and_the_timeline_says_so(model, tmp_path, capsys):
    wave, spans = speech_recording(3, seed=5)
    start = int(spans[1][0] * 16000) + 4000
    wave[start:start + 160] = np.nan
    path = tmp_path / "holes.wav"
    sf.write(path, wave, 16000, subtype="FLOAT")
    out = tmp_path / "t.json"
    assert main(["predict", str(model), str(path), "--memory", "window", "--out", str(out), "--quiet",
                 "--no-plot"]) == 0
    timeline = json.loads(out.read_text())  # strict JSON: a bare NaN would not parse
    said = f"{path}: 160 sample(s) were NaN or infinite and were read as silence"
    assert any(w.startswith(said) for w in timeline["warnings"])
    assert f"warning: {said}" in capsys.readouterr().err
    assert timeline["utterances"]
