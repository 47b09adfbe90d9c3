"""The one output rule (convmem/output_folder.py): create, or reuse what this command made with the
same settings, or refuse naming what is there; one writer at a time; outputs never overwrite inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from convmem.errors import ConfigError
from convmem.output_folder import (MARKER, check_output_files, claim_output_folder, folder_lock,
                                   record_settings)


def test_a_folder_of_the_users_files_is_refused_naming_them(tmp_path):
    (tmp_path / "call.wav").write_bytes(b"RIFF")
    (tmp_path / "report.md").write_text("mine")
    with pytest.raises(ConfigError, match=r"not made by `convmem run` \(it holds call.wav, report.md\)"):
        with claim_output_folder(tmp_path, "run"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["call.wav", "report.md"]  # nothing written


def test_created_then_reused_with_the_same_settings_refused_with_others(tmp_path):
    out = tmp_path / "m"
    with claim_output_folder(out, "train", {"slm": {"init_seed": 0}, "lr": 1}):
        (out / "bundle.json").write_text("{}")
    with claim_output_folder(out, "train", {"slm": {"init_seed": 0}, "lr": 1}):
        pass
    with pytest.raises(ConfigError, match=r"other settings \(differs at: lr, slm.init_seed\)"):
        with claim_output_folder(out, "train", {"slm": {"init_seed": 7}, "lr": 2}):
            pass
    # another command's folder is not continued
    with pytest.raises(ConfigError, match="holds the output of `convmem train`, not of `convmem run`"):
        with claim_output_folder(out, "run"):
            pass


def test_force_replaces_only_convmems_own_files(tmp_path):
    out = tmp_path / "m"
    with claim_output_folder(out, "train", {"a": 1}, owned=("bundle.json", "slm")):
        (out / "bundle.json").write_text("{}")
        (out / "slm").mkdir()
    with claim_output_folder(out, "train", {"a": 2}, owned=("bundle.json", "slm"), force=True):
        assert not (out / "bundle.json").exists() and not (out / "slm").exists()
    assert json.loads((out / MARKER).read_text())["settings"] == {"a": 2}
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="also holds notes.txt"):
        with claim_output_folder(out, "train", {"a": 3}, owned=("bundle.json", "slm"), force=True):
            pass
    assert (out / "notes.txt").read_text() == "mine"


def test_a_command_refused_before_writing_leaves_no_folder(tmp_path):
    out = tmp_path / "new"
    with pytest.raises(ValueError):
        with claim_output_folder(out, "eval-model"):
            raise ValueError("bad manifest")
    assert not out.exists()


def test_settings_recorded_later_are_compared_too(tmp_path):
    with claim_output_folder(tmp_path / "m", "train") as out:
        record_settings(out, "train", {"corpus_sha256": "aa"}, field="data")
        (out / "bundle.json").write_text("{}")
    with claim_output_folder(tmp_path / "m", "train") as out:
        with pytest.raises(ConfigError, match="differs at: corpus_sha256"):
            record_settings(out, "train", {"corpus_sha256": "bb"}, field="data")


_HOLDER = textwrap.dedent("""
    import sys, time
    from convmem.output_folder import claim_output_folder
    with claim_output_folder(sys.argv[1], "run"):
        print("held", flush=True)
        time.sleep(60)
""")


def test_a_second_writer_is_refused_with_the_first_ones_pid(tmp_path):
    out = tmp_path / "study"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"another convmem process \(pid {holder.pid}\) is writing here"):
            with claim_output_folder(out, "run"):
                pass
        # the same refusal from the command line: rc 2, no traceback, before any work
        res = subprocess.run([sys.executable, "-m", "convmem", "run", "-", "corpus.synth_preset=tiny", "threads=1",
                              "--out", str(out)], capture_output=True, text=True)
        assert res.returncode == 2 and f"(pid {holder.pid})" in res.stderr and "Traceback" not in res.stderr
    finally:
        holder.kill()
        holder.wait()
    with claim_output_folder(out, "run"):  # the lock died with its holder
        pass


def test_locks_are_reentrant_within_a_process(tmp_path):
    with folder_lock(tmp_path / ".lock", tmp_path):
        with folder_lock(tmp_path / ".lock", tmp_path):
            pass
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())


def test_outputs_never_overwrite_inputs_or_each_other(tmp_path):
    audio, mine, ours = tmp_path / "call.wav", tmp_path / "notes.json", tmp_path / "old.json"
    for p in (audio, mine, ours):
        p.write_text("x")
    never = lambda p: False  # noqa: E731

    def check(out, plot, overwrite=False, is_ours=never):
        check_output_files({"--out": out, "--plot": plot}, {"AUDIO": audio}, overwrite, is_ours)

    with pytest.raises(ConfigError, match="--plot .*call.wav: is the input AUDIO"):
        check(tmp_path / "t.csv", audio, overwrite=True)  # not even with --overwrite
    with pytest.raises(ConfigError, match="--out .*t.json: is also --plot"):
        check(tmp_path / "t.json", tmp_path / "." / "t.json")
    with pytest.raises(ConfigError, match="notes.json: exists and was not written by convmem"):
        check(mine, tmp_path / "t.png")
    check(mine, tmp_path / "t.png", overwrite=True)
    check(ours, tmp_path / "t.png", is_ours=lambda p: p == ours)


def test_output_files_through_a_link_are_the_input(tmp_path):
    audio = tmp_path / "call.wav"
    audio.write_text("x")
    link = tmp_path / "link.png"
    link.symlink_to(audio)
    with pytest.raises(ConfigError, match="is the input AUDIO"):
        check_output_files({"--plot": link}, {"AUDIO": audio}, True, lambda p: True)
    assert Path(audio).read_text() == "x"


def test_only_the_main_process_of_a_launch_claims(tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with claim_output_folder(tmp_path, "run"):  # rank 1 neither checks nor writes: rank 0 does
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(ConfigError, match="not made by `convmem run`"):
        with claim_output_folder(tmp_path, "run"):
            pass
