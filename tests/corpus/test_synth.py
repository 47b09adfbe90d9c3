"""The synthetic corpus: determinism, a valid manifest, session/speaker structure, emotions that
move prosody in their intended direction, and safe output handling."""

import json
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
