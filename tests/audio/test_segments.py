"""Segment files (CSV, RTTM, IEMOCAP-style): parsed times and speakers, errors naming file:line."""

from __future__ import annotations

import pytest

from convmem.audio.segments import TimeSegment, read_segments
from convmem.errors import ManifestError


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_with_speaker_sorted_and_extra_columns_ignored(tmp_path):
    p = _write(tmp_path, "s.csv", "Start,End,Speaker,label\n3.5,5.0,B,ang\n0.25,2.0,A,neu\n\n")
    segs = read_segments(p)
    assert [(s.start, s.end, s.speaker) for s in segs] == [(0.25, 2.0, "A"), (3.5, 5.0, "B")]
    assert segs[0].where == f"{p}:3"
    assert not hasattr(segs[0], "emotion") and not hasattr(segs[0], "label")  # gold labels never read


def test_csv_without_speaker(tmp_path):
    segs = read_segments(_write(tmp_path, "s.csv", "start,end\n1,2\n"))
    assert segs == [TimeSegment(1.0, 2.0, None, None, segs[0].where)]


def test_rttm(tmp_path):
    text = (";; comment\n"
            "SPKR-INFO rec 1 <NA> <NA> <NA> unknown spk1 <NA>\n"
            "SPEAKER rec 1 10.50 2.25 <NA> <NA> spk2 <NA> <NA>\n"
            "SPEAKER rec 1 1.00 0.50 <NA> <NA> spk1 <NA> <NA>\n")
    segs = read_segments(_write(tmp_path, "d.rttm", text))
    assert [(s.start, s.end, s.speaker) for s in segs] == [(1.0, 1.5, "spk1"), (10.5, 12.75, "spk2")]


def test_iemocap_style_speaker_from_turn_name(tmp_path):
    text = ("% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
            "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]\n"
            "C-E1:\tNeutral;\t()\n\n"
            "[10.0100 - 11.3925]\tSes01F_impro01_M001\tfru\t[2.5000, 3.5000, 3.0000]\n"
            "[12.0 - 13.0]\tcustom_id\txxx\n")
    segs = read_segments(_write(tmp_path, "Ses01F_impro01.txt", text))
    assert [(s.start, s.end, s.speaker, s.id) for s in segs] == [
        (6.2901, 8.2357, "Ses01_F", "Ses01F_impro01_F000"),
        (10.01, 11.3925, "Ses01_M", "Ses01F_impro01_M001"),
        (12.0, 13.0, None, "custom_id")]


def test_format_sniffed_without_extension(tmp_path):
    assert read_segments(_write(tmp_path, "a.txt", "start,end\n0,1\n"))[0].end == 1.0
    assert read_segments(_write(tmp_path, "b.lab", "SPEAKER r 1 0 1 <NA> <NA> x <NA> <NA>\n"))[0].speaker == "x"


@pytest.mark.parametrize("name,text,where,msg", [
    ("a.csv", "start,stop\n0,1\n", ":1", "missing end"),
    ("a.csv", "start,end\n0,1\n2,x\n", ":3", "end 'x' is not a number"),
    ("a.csv", "start,end\n0,1\n2,1.5\n", ":3", "not after start"),
    ("a.csv", "start,end\n-1,1\n", ":2", "negative"),
    ("a.csv", "start,end\n0,1,2\n", ":2", "3 fields"),
    ("a.csv", "start,end\nnan,1\n", ":2", "finite"),
    ("a.rttm", "SPEAKER r 1 0 -2 <NA> <NA> x\n", ":1", "duration -2"),
    ("a.rttm", "SPEAKER r 1 0\n", ":1", "at least 8 fields"),
    ("a.txt", "[1.0 - 2.0]\tid\tneu\n[3.0 to 4.0] id2 neu\n", ":2", "not a segment line"),
])
def test_errors_name_file_and_line(tmp_path, name, text, where, msg):
    p = _write(tmp_path, name, text)
    with pytest.raises(ManifestError, match=msg) as err:
        read_segments(p)
    assert f"{p}{where}" in str(err.value)


@pytest.mark.parametrize("name,text,msg", [
    ("a.txt", "hello world\n", "unknown segments format"),
    ("a.csv", "", "empty CSV"),
    ("a.rttm", ";; nothing\n", "no segments"),
])
def test_file_level_errors(tmp_path, name, text, msg):
    with pytest.raises(ManifestError, match=msg):
        read_segments(_write(tmp_path, name, text))


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_segments(tmp_path / "nope.csv")


RTTM_TWO = ("SPEAKER rec1 1 0.00 1.00 <NA> <NA> a <NA> <NA>\n"
            "SPEAKER rec2 1 5.00 1.00 <NA> <NA> b <NA> <NA>\n"
            "SPEAKER rec1 1 2.00 1.00 <NA> <NA> a <NA> <NA>\n")


def test_rttm_of_several_recordings_reads_one_by_file_id(tmp_path):
    p = _write(tmp_path, "two.rttm", RTTM_TWO)
    with pytest.raises(ManifestError, match=r"two.rttm: RTTM lines of 2 recordings \('rec1', 'rec2'\)"):
        read_segments(p)
    assert [(s.start, s.speaker) for s in read_segments(p, file_id="rec1")] == [(0.0, "a"), (2.0, "a")]
    assert [(s.start, s.speaker) for s in read_segments(p, audio_stem="rec2")] == [(5.0, "b")]
    assert [s.start for s in read_segments(p, file_id="rec2", audio_stem="rec1")] == [5.0]
    with pytest.raises(ManifestError, match=r"no SPEAKER lines for recording 'rec3'"):
        read_segments(p, file_id="rec3")


@pytest.mark.parametrize("text, msg", [
    ("start,end,speaker\n0,2,A\n1,3,A\n", r"a.csv:3: turns of speaker 'A' overlap"),
    ("start,end,speaker\n0,2,A\n0,2,A\n", r"a.csv:3: duplicates .*a.csv:2"),
    ("start,end\n0,2\n1,3\n", r"a.csv:3: turns of the unnamed speaker overlap"),
])
def test_segments_follow_the_manifest_rule(tmp_path, text, msg):
    with pytest.raises(ManifestError, match=msg):
        read_segments(_write(tmp_path, "a.csv", text))
    read_segments(_write(tmp_path, "b.csv", "start,end,speaker\n0,2,A\n1,3,B\n"))  # crosstalk is fine


def test_segments_past_the_audio_are_refused_once_its_length_is_known(tmp_path):
    from convmem.audio.segments import check_segments

    segs = read_segments(_write(tmp_path, "a.csv", "start,end\n1,2\n6,20\n"))
    check_segments(segs, 20.0, "x.wav")
    with pytest.raises(ManifestError, match=r"a.csv:3: 20.000 s is outside the audio \(8.000 s, x.wav\)"):
        check_segments(segs, 8.0, "x.wav")
