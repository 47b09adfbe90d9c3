"""`convmem tokenize`: fit on training sessions, fill the cache, and a rerun only reads it."""

from __future__ import annotations

import json

from convmem.cli import main
from convmem.corpus.manifest import write_manifest
from convmem.tokenizers import load_tokenizer

from .test_cache import make_dialogues


def test_fit_then_tokenize_then_rerun_from_cache(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "manifest.jsonl", make_dialogues(tmp_path, n_sessions=2, seconds=6.0))
    tok_dir, cache = tmp_path / "tok", tmp_path / "cache"
    common = [str(manifest), "--tokenizer", str(tok_dir), "--cache", str(cache), "--no-progress"]

    assert main(["tokenize", *common, "--fit", "kmeans", "--sessions", "Ses0", "--codebook-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "fitted kmeans on sessions Ses0" in out and "6 utterances in 2 dialogues" in out and "0 hits, 6 new" in out
    meta = json.loads((tok_dir / "tokenizer.json").read_text())
    assert meta["kind"] == "kmeans" and meta["config"]["codebook_size"] == 8
    fingerprint = load_tokenizer(tok_dir).fingerprint
    assert len(list((cache / fingerprint[:16]).glob("*.npy"))) == 6

    assert main(["tokenize", *common]) == 0
    assert "6 hits, 0 new" in capsys.readouterr().out


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "manifest.jsonl", make_dialogues(tmp_path, n_sessions=1))
    args = ["tokenize", str(manifest), "--tokenizer", str(tmp_path / "tok"), "--no-progress"]
    assert main([*args, "--fit", "kmeans"]) == 2
    assert "--fit needs --sessions" in capsys.readouterr().err
    assert main(args) == 2
    assert "not a tokenizer directory" in capsys.readouterr().err
    assert main([*args, "--fit", "kmeans", "--sessions", "Ses5"]) == 2
    assert "['Ses5'] not found" in capsys.readouterr().err
    assert not (tmp_path / "tok").exists()  # nothing half-written


def test_fit_pitch_kmeans(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "manifest.jsonl", make_dialogues(tmp_path, n_sessions=2, seconds=6.0))
    tok_dir = tmp_path / "tok"
    assert main(["tokenize", str(manifest), "--tokenizer", str(tok_dir), "--cache", str(tmp_path / "cache"),
                 "--no-progress", "--fit", "kmeans-f0", "--sessions", "Ses0", "--spectral-size", "4",
                 "--pitch-bins", "2"]) == 0
    assert "fitted kmeans-f0 on sessions Ses0" in capsys.readouterr().out
    tok = load_tokenizer(tok_dir)
    assert tok.kind == "kmeans-f0" and tok.codebook_size == 4 * 3


def test_fit_kmeans_with_cmn_and_prosody(tmp_path, capsys):
    manifest = write_manifest(tmp_path / "manifest.jsonl", make_dialogues(tmp_path, n_sessions=2, seconds=6.0))
    base = ["tokenize", str(manifest), "--tokenizer", str(tmp_path / "tok"), "--cache", str(tmp_path / "cache"),
            "--no-progress", "--sessions", "Ses0", "--codebook-size", "8", "--utterance-cmn", "--prosody-weight", "2"]
    assert main([*base, "--fit", "kmeans-f0"]) == 2
    assert "--utterance-cmn, --prosody-weight only apply to --fit kmeans" in capsys.readouterr().err
    assert main([*base, "--fit", "kmeans"]) == 0
    config = load_tokenizer(tmp_path / "tok").config
    assert config.utterance_cmn is True and config.prosody_weight == 2.0 and config.codebook_size == 8
