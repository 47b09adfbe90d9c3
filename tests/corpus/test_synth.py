"""The synthetic corpus: determinism, a valid manifest, session/speaker structure, emotions that
move prosody in their intended direction, and safe output handling."""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from convmem.cli import main
from convmem.corpus import synth
from convmem.corpus.manifest import read_manifest
from convmem.commands.synth import PRESET_NAMES
from convmem.corpus.synth_presets import PRESETS, HabitSpread, SynthPreset, get_preset
from convmem.corpus.espeak import EspeakError
from convmem.errors import ConfigError
from tests.conftest import SHARED_DATA

MICRO = SynthPreset("micro", sessions=2, dialogues_per_session=1, turns=(5, 6))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "tiny"
    assert main(["synth", str(out), "--preset", "tiny", "--seed", "0", "--quiet"]) == 0
    return out


def test_cli_tiny_twice_with_one_seed_is_byte_identical(tiny, tmp_path):
    again = tmp_path / "again"
    assert main(["synth", str(again), "--preset", "tiny", "--seed", "0", "--quiet", "--workers", "1"]) == 0
    for name in ("manifest.jsonl", "generator_truth.json", "audio/S02_D01.wav"):
        assert (tiny / name).read_bytes() == (again / name).read_bytes(), name


def test_another_seed_gives_another_corpus(tmp_path):
    a = synth.synthesize_corpus(tmp_path / "a", MICRO, seed=0, progress=False)
    b = synth.synthesize_corpus(tmp_path / "b", MICRO, seed=1, progress=False)
    assert (tmp_path / "a/manifest.jsonl").read_bytes() != (tmp_path / "b/manifest.jsonl").read_bytes()
    assert [u.text for u in a[0].utterances] != [u.text for u in b[0].utterances]


def test_manifest_is_valid_and_structured(tiny):
    dialogues = read_manifest(tiny / "manifest.jsonl")  # validates times inside each wav
    assert [d.dialogue_id for d in dialogues] == [f"S0{s}_D0{k}" for s in (1, 2, 3) for k in (1, 2)]
    speakers_of = {}
    for d in dialogues:
        assert d.audio.parent == tiny / "audio" and d.audio.is_file()
        assert sorted(d.speakers) == [f"{d.session}_A", f"{d.session}_B"]
        speakers_of.setdefault(d.session, set()).update(d.speakers)
        assert 14 <= len(d.utterances) <= 18
        prev_end = 0.0
        for u in d.utterances:
            assert u.start > prev_end  # a pause before every turn, turns never overlap
            assert 0.5 <= u.duration <= 9.0
            assert u.emotion in ("neu", "hap", "sad", "ang") and u.text
            prev_end = u.end
    all_speakers = [s for v in speakers_of.values() for s in v]
    assert len(all_speakers) == len(set(all_speakers)) == 6  # no speaker in two sessions
    text = (tiny / "manifest.jsonl").read_text()
    assert "habit" not in text and "pitch" not in text  # generator truth stays in its sidecar
    truth = json.loads((tiny / "generator_truth.json").read_text())
    assert sorted(truth["speakers"]) == sorted(all_speakers)
    assert set(truth["speakers"]["S01_A"]["reference_prosody"]) == {
        "f0_mean_st", "f0_range_st", "energy_db", "rate_syl_s"}


def test_summary_counts(tiny):
    dialogues = read_manifest(tiny / "manifest.jsonl")
    s = synth.summarize(dialogues)
    assert (s["sessions"], s["speakers"], s["dialogues"]) == (3, 6, 6)
    assert s["turns"] == sum(len(d.utterances) for d in dialogues) == sum(s["emotions"].values())
    assert s["minutes"] == pytest.approx(sum(d.duration for d in dialogues) / 60, abs=0.01)
    assert "3 sessions, 6 speakers, 6 dialogues" in synth.format_summary(s)


def test_emotions_move_prosody_in_their_direction_and_report_runs(tiny):
    from convmem.corpus.context_check import context_gap_report

    r = context_gap_report(tiny / "manifest.jsonl", progress=False)
    d = r["directions"]
    assert d["all_intended"], d
    assert d["mean_minus_habit"]["ang"]["energy_db"] > d["mean_minus_habit"]["neu"]["energy_db"] + 1.0
    assert d["mean_minus_habit"]["sad"]["f0_mean_st"] < d["mean_minus_habit"]["neu"]["f0_mean_st"] - 1.0
    # Tiny is far too small for the bounds; the oracle must still beat raw statistics.
    assert r["gaps_wa"]["oracle_minus_raw"] > 0
    assert r["n_scored"] == r["corpus"]["turns"]


def test_habit_spread_exceeds_emotion_shift_and_sequences_are_sticky():
    habits, plans = synth.plan_corpus(get_preset("default"), seed=3)
    pitch = np.array([h.pitch for h in habits.values()])
    assert pitch.std() > 5  # across speakers, comparable to the largest pitch shift (9)
    stays = []
    for p in plans:
        for spk in {t.speaker for t in p.turns}:
            emo = [t.emotion for t in p.turns if t.speaker == spk]
            stays += [a == b for a, b in zip(emo, emo[1:])]
        assert 30 <= len(p.turns) <= 80
    assert 0.7 < np.mean(stays) < 0.92


def test_refuses_non_empty_output_unless_forced(tiny, capsys):
    before = (tiny / "manifest.jsonl").read_bytes()
    assert main(["synth", str(tiny), "--preset", "tiny", "--quiet"]) == 2
    assert "not empty (use --force" in capsys.readouterr().err
    assert (tiny / "manifest.jsonl").read_bytes() == before


def test_failed_render_leaves_no_half_written_corpus(tmp_path):
    bad = replace(MICRO, habit=HabitSpread(language="xx-nope"))
    with pytest.raises(EspeakError, match="no voice") as err:
        synth.synthesize_corpus(tmp_path / "out", bad, seed=0, progress=False)
    assert err.value.__notes__[0].startswith("(synth: rendering dialogue ")
    assert list(tmp_path.iterdir()) == []


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="known: tiny, default, wide, long"):
        get_preset("huge")
    assert set(PRESETS) == {"tiny", "default", "wide", "long"} == set(PRESET_NAMES)


@pytest.mark.skipif(not (SHARED_DATA / "meld").is_dir(), reason="shared MELD annotations not present")
def test_meld_emotion_sequences_keep_other_labels_as_unscored_context():
    seqs = synth.load_meld_sequences(SHARED_DATA / "meld")
    assert len(seqs) > 1000 and all(lab in synth.MELD_TO_OURS.values() for s in seqs for _, lab in s)
    _, plans = synth.plan_corpus(get_preset("default"), seed=0, meld_dir=SHARED_DATA / "meld")
    labels = [t.emotion for p in plans for t in p.turns]
    assert {"sur", "neu", "ang"} <= set(labels)
    d = synth._to_dialogue(plans[0], [(i * 10, i * 10 + 5) for i in range(len(plans[0].turns))], None)
    assert all((u.emotion is None) == (t.emotion not in ("neu", "hap", "sad", "ang"))
               for u, t in zip(d.utterances, plans[0].turns))


def test_cli_error_names_the_failed_job(tmp_path, monkeypatch, capsys):
    def fail(*_, **__):
        err = EspeakError("no voice for language 'xx-nope'")
        err.add_note("(synth: rendering dialogue S01_D00)")
        raise err
    monkeypatch.setattr(synth, "synthesize_corpus", fail)
    assert main(["synth", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "convmem synth: error: no voice for language 'xx-nope'", "(synth: rendering dialogue S01_D00)"]


def test_wide_preset_has_thirty_speakers_none_in_two_sessions():
    habits, plans = synth.plan_corpus(get_preset("wide"), seed=0)
    sessions = {}
    for p in plans:
        for t in p.turns:
            sessions.setdefault(t.speaker, set()).add(p.session)
    assert len(plans) == 30 and len({p.session for p in plans}) == 15
    assert len(habits) == 30 and all(len(s) == 1 for s in sessions.values())


# ---------------------------------------------------------------- outputs: --force, umask, interrupts


def test_force_replaces_only_what_convmem_wrote(tmp_path, capsys):
    out = tmp_path / "out"
    synth.synthesize_corpus(out, MICRO, seed=0, progress=False)
    before = (out / "manifest.jsonl").read_bytes()
    (out / "precious.txt").write_text("my notes")
    (out / "notes").mkdir()
    (out / "notes" / "notes.md").write_text("more")
    (out / "audio" / "mine.flac").write_bytes(b"x")
    assert main(["synth", str(out), "--preset", "tiny", "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--force replaces only what convmem wrote" in err
    assert "audio/mine.flac, notes/, precious.txt" in err
    assert (out / "precious.txt").read_text() == "my notes" and (out / "notes" / "notes.md").exists()
    assert (out / "manifest.jsonl").read_bytes() == before
    for p in (out / "precious.txt", out / "notes" / "notes.md", out / "audio" / "mine.flac"):
        p.unlink()
    (out / "notes").rmdir()
    (out / "context_report.json").write_text("{}")  # `synth --report` output: ours to replace
    synth.synthesize_corpus(out, MICRO, seed=1, force=True, progress=False)
    assert (out / "manifest.jsonl").read_bytes() != before and not (out / "context_report.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.fixture
def umask():
    def set_mask(mask):
        old.append(os.umask(mask))

    old: list[int] = []
    yield set_mask
    if old:
        os.umask(old[0])


def test_outputs_respect_the_umask(tmp_path, umask):
    from convmem.fileio import atomic_write_text

    umask(0o022)
    out = tmp_path / "out"
    synth.synthesize_corpus(out, MICRO, seed=0, progress=False)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(out) == 0o755 and mode(out / "audio") == 0o755
    assert mode(out / "manifest.jsonl") == 0o644 and {mode(p) for p in (out / "audio").iterdir()} == {0o644}
    umask(0o027)
    atomic_write_text(tmp_path / "x.txt", "x")
    assert mode(tmp_path / "x.txt") == 0o640


def _start_synth(tmp_path):
    """`convmem synth` of the default preset as a process of its own group, once it is rendering."""
    # Ctrl-C's default action, whatever this test process inherited: an ignored SIGINT (an earlier
    # in-process worker test, nohup) passes through exec, and Python then installs no handler
    proc = subprocess.Popen([sys.executable, "-m", "convmem", "synth", "out", "--quiet"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.*/audio/*.wav")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.1)
    return proc


def test_ctrl_c_stops_synth_quietly_and_leaves_nothing(tmp_path):
    proc = _start_synth(tmp_path)
    time.sleep(1.0)  # both workers deep in eSpeak, whose audio callback a worker's Ctrl-C would interrupt
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130 and out.strip() == "convmem synth: interrupted", out
    assert list(tmp_path.iterdir()) == []


def test_a_killed_synth_leaves_quiet_workers_and_a_stage_the_next_run_removes(tmp_path):
    proc = _start_synth(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # only the parent: its workers finish their job, nobody listens
    proc.wait()
    out = proc.stdout.read()  # EOF once the last worker holding the pipe is gone
    assert "Traceback" not in out and "BrokenPipeError" not in out, out
    stages = list(tmp_path.glob(".out.convmem-stage-*"))
    assert len(stages) == 1 and (stages[0] / ".convmem-staging").read_text().split() == [str(proc.pid)]
    assert main(["synth", str(tmp_path / "out"), "--preset", "tiny", "--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
