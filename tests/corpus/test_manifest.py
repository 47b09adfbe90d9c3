import json

import pytest

from convmem.corpus.manifest import read_manifest, write_manifest
from convmem.corpus.types import Dialogue, Utterance
from convmem.errors import ManifestError


def _dialogue(tmp_path, tone_wav, did="d1", session="S1", utts=None, seconds=10.0):
    wav = tone_wav(f"{did}.wav", seconds=seconds)
    utts = utts or [
        Utterance(f"{did}_u0", "S1_A", 0.0, 2.0, "neu"),
        Utterance(f"{did}_u1", "S1_B", 2.2, 4.0, "ang"),
        Utterance(f"{did}_u2", "S1_A", 4.5, 6.0, None, text="hm"),
    ]
    return Dialogue(did, session, utts, audio=wav)


def test_roundtrip_relative_paths(tmp_path, tone_wav):
    d = _dialogue(tmp_path, tone_wav)
    path = write_manifest(tmp_path / "manifest.jsonl", [d])
    line = json.loads(path.read_text().splitlines()[0])
    assert line["audio"] == "d1.wav"
    assert line["utterances"][2] == {"id": "d1_u2", "speaker": "S1_A", "start": 4.5, "end": 6.0, "emotion": None, "text": "hm"}
    back = read_manifest(path)
    assert back[0].audio == (tmp_path / "d1.wav")
    assert [u.emotion for u in back[0].utterances] == ["neu", "ang", None]


def _write_lines(tmp_path, objs):
    p = tmp_path / "manifest.jsonl"
    p.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return p


def _obj(**over):
    base = {"dialogue_id": "d1", "session": "S1", "audio": "d1.wav", "utterances": [
        {"id": "u0", "speaker": "A", "start": 0.0, "end": 1.0, "emotion": "neu"},
        {"id": "u1", "speaker": "B", "start": 1.0, "end": 2.0, "emotion": "hap"},
    ]}
    base.update(over)
    return base


@pytest.mark.parametrize(
    "mutate,pattern",
    [
        (lambda o: o["utterances"][1].update(emotion="joy"), r"manifest.jsonl:2: utterances\[1\]\.emotion: unknown label 'joy'"),
        (lambda o: o["utterances"][0].update(start=1.0), r"manifest.jsonl:2: utterances\[0\]\.start: start 1.0 >= end 1.0"),
        (lambda o: o["utterances"][1].update(end=99.0), r"manifest.jsonl:2: utterances\[1\]\.end: 99.000 s is outside the audio"),
        (lambda o: (o["utterances"][0].update(start=0.5),
                    o["utterances"].append({"id": "u2", "speaker": "A", "start": 0.0, "end": 0.3, "emotion": None})),
         r"manifest.jsonl:2: utterances\[2\]\.start: turns of speaker 'A' are not sorted"),
        (lambda o: o["utterances"].append({"id": "u2", "speaker": "A", "start": 0.9, "end": 1.5, "emotion": None}),
         r"manifest.jsonl:2: utterances\[2\]\.start: turns of speaker 'A' overlap"),
        (lambda o: o.update(audio="gone.wav"), r"manifest.jsonl:2: field audio: audio file not found: .*gone.wav"),
        (lambda o: o.update(dialogue_id="d0"), r"manifest.jsonl:2: field dialogue_id: duplicate id 'd0' \(first on line 1\)"),
        (lambda o: o["utterances"][0].update(id="x0"), r"manifest.jsonl:2: utterances\[0\]\.id: duplicate utterance id 'x0'"),
        (lambda o: o["utterances"][0].pop("speaker"), r"manifest.jsonl:2: utterances\[0\]\.speaker: missing required field"),
        (lambda o: o["utterances"][0].update(end="2"), r"manifest.jsonl:2: utterances\[0\]\.end: expected a finite number"),
    ],
)
def test_bad_manifest_names_line_and_field(tmp_path, tone_wav, mutate, pattern):
    tone_wav("d1.wav", seconds=3.0)
    tone_wav("d0.wav", seconds=3.0)
    first = _obj(dialogue_id="d0", audio="d0.wav")
    first["utterances"] = [{"id": "x0", "speaker": "Z", "start": 0.0, "end": 1.0, "emotion": "sad"}]
    second = _obj()
    mutate(second)
    path = _write_lines(tmp_path, [first, second])
    with pytest.raises(ManifestError, match=pattern):
        read_manifest(path)


def test_not_json_names_line(tmp_path, tone_wav):
    tone_wav("d1.wav", seconds=3.0)
    p = tmp_path / "manifest.jsonl"
    p.write_text(json.dumps(_obj()) + "\n\n{oops\n")
    with pytest.raises(ManifestError, match=r"manifest.jsonl:3: not valid JSON"):
        read_manifest(p)


def test_label_set_can_be_restricted(tmp_path, tone_wav):
    tone_wav("d1.wav", seconds=3.0)
    obj = _obj()
    obj["utterances"][1]["emotion"] = "sur"
    p = _write_lines(tmp_path, [obj])
    assert read_manifest(p)[0].utterances[1].emotion == "sur"  # 7-class label is known
    with pytest.raises(ManifestError, match="unknown label 'sur'"):
        read_manifest(p, labels=("neu", "hap", "sad", "ang"))


def test_bad_write_leaves_existing_manifest_intact(tmp_path, tone_wav):
    good = _dialogue(tmp_path, tone_wav)
    path = write_manifest(tmp_path / "manifest.jsonl", [good])
    before = path.read_bytes()
    bad = _dialogue(tmp_path, tone_wav, did="d2", utts=[Utterance("z", "S1_A", 3.0, 1.0, "neu")])
    with pytest.raises(ManifestError, match=r"utterances\[0\]\.start"):
        write_manifest(path, [good, bad])
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_several_manifests_are_merged_and_ids_must_not_collide(tmp_path, tone_wav):
    from convmem.corpus.manifest import read_manifests

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_manifest(tmp_path / "a" / "manifest.jsonl", [_dialogue(tmp_path, tone_wav, "ra_d1", "ra_S1")])
    utts = [Utterance("tu_u0", "tu_A", 0.0, 1.0, "hap"), Utterance("tu_u1", "tu_B", 1.5, 2.0, None)]
    b = write_manifest(tmp_path / "b" / "manifest.jsonl", [_dialogue(tmp_path, tone_wav, "tu_d1", "tu_S1", utts)])
    merged = read_manifests([a, b])
    assert [(d.dialogue_id, d.session) for d in merged] == [("ra_d1", "ra_S1"), ("tu_d1", "tu_S1")]
    assert merged[1].audio.resolve() == tmp_path / "tu_d1.wav"  # paths stay relative to their own manifest
    assert read_manifests([a]) == read_manifest(a)

    same_utts = [Utterance(f"ra_d1_u{i}", f"x_{i}", 2.0 * i, 2.0 * i + 1, "neu") for i in range(2)]
    clashes = {
        "session 'ra_S1'": _dialogue(tmp_path, tone_wav, "x_d1", "ra_S1"),
        "dialogue id 'ra_d1'": _dialogue(tmp_path, tone_wav, "ra_d1", "x_S1", utts),
        "utterance id 'ra_d1_u0'": _dialogue(tmp_path, tone_wav, "x_d2", "x_S2", same_utts),
    }
    for i, (what, dialogue) in enumerate(clashes.items()):
        c = write_manifest(tmp_path / f"c{i}.jsonl", [dialogue])
        with pytest.raises(ManifestError) as err:
            read_manifests([a, c])
        assert str(err.value).startswith(f"{c}: {what} is also in {a}")
    with pytest.raises(ManifestError, match="listed twice"):
        read_manifests([a, b, a])
    with pytest.raises(ManifestError, match="no manifest given"):
        read_manifests([])


def test_empty_manifest_is_an_error_naming_the_file(tmp_path):
    """Not "leave-one-session-out needs at least 2 sessions, found 0" three steps later."""
    p = tmp_path / "empty.jsonl"
    p.write_text("\n\n")
    with pytest.raises(ManifestError, match=r"empty.jsonl: no dialogues \(the manifest is empty\)"):
        read_manifest(p)


def test_dialogue_audio_that_is_a_directory_is_named_so(tmp_path):
    (tmp_path / "d1.wav").mkdir()
    p = _write_lines(tmp_path, [_obj()])
    with pytest.raises(ManifestError, match=r"manifest.jsonl:1: field audio: .*d1.wav: is a directory"):
        read_manifest(p)
