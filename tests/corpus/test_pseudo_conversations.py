"""The shared pseudo-conversation builder: pairing, turn planning, follow-up turns."""

from collections import Counter
from pathlib import Path

import pytest

from convmem.corpus.pseudo_conversations import (
    PseudoConversationConfig,
    PseudoReport,
    Session,
    SourceClip,
    pair_speakers,
    plan_sessions,
    to_dialogues,
)
from convmem.errors import ManifestError

CATS = ("neu", "hap", "sad", "ang", "fea")


def clips(speaker: str, n: int) -> list[SourceClip]:
    """`n` clips of `speaker` without files, emotions cycling through CATS, lengths varying."""
    return [SourceClip(Path(f"/x/{speaker}_{i}.flac"), f"{speaker}_{i:03d}", speaker, CATS[i % len(CATS)],
                       8000 + 31 * i, f"{speaker}_{i:03d}", text=f"t{i}") for i in range(n)]


def session(a: str, b: str) -> Session:
    return Session(f"c_{a}-{b}", (a, b), (len(a), len(b)))


def test_pairing_by_gender_then_by_id():
    by_gender = pair_speakers("nemo", {"SM0": "male", "EB0": "female", "KS0": "male", "IC0": "female"})
    assert [(s.name, s.speakers) for s in by_gender.sessions] == [
        ("nemo_EB0-KS0", ("nemo_EB0", "nemo_KS0")), ("nemo_IC0-SM0", ("nemo_IC0", "nemo_SM0"))]
    assert by_gender.unpaired == [] and "female + one male" in by_gender.rule
    lopsided = pair_speakers("nemo", {"A": "female", "B": "female", "C": "male"})
    assert [s.name for s in lopsided.sessions] == ["nemo_A-C"] and lopsided.unpaired == ["B"]
    by_id = pair_speakers("turev", dict.fromkeys(["6783", "1157", "1984", "1234", "1358"]))
    assert [s.name for s in by_id.sessions] == ["turev_1157-1234", "turev_1358-1984"]
    assert by_id.unpaired == ["6783"] and "no gender" in by_id.rule
    # the random stream of a session depends on its own speakers only
    assert by_id.sessions[0].rng_key == pair_speakers("turev", dict.fromkeys(["1157", "1234"])).sessions[0].rng_key


def _check_plan(plans, pool):
    used = [t.clip.stem for p in plans for t in p.turns]
    assert sorted(used) == sorted(c.stem for v in pool.values() for c in v)  # every clip exactly once
    for p in plans:
        gaps = [b.start_sample - (a.start_sample + a.clip.samples) for a, b in zip(p.turns, p.turns[1:])]
        assert min(gaps) >= 0.15 * 16000 - 1 and max(gaps) <= 0.6 * 16000 + 1


def test_equal_counts_alternate_strictly_and_are_pinned():
    pool = {"A": clips("A", 30), "B": clips("B", 30)}
    report = PseudoReport()
    plans = plan_sessions([session("A", "B")], pool, PseudoConversationConfig(seed=0, turns_per_dialogue=20), report)
    _check_plan(plans, pool)
    assert [len(p.turns) for p in plans] == [20, 20, 20] and report.follow_up_turns == 0
    for p in plans:
        speakers = [t.clip.speaker for t in p.turns]
        assert all(a != b for a, b in zip(speakers, speakers[1:]))
    assert [t.clip.stem for t in plans[0].turns[:6]] == PINNED_EQUAL


PINNED_EQUAL = ["A_013", "B_002", "A_018", "B_000", "A_006", "B_016"]


def test_unequal_counts_become_follow_up_turns():
    pool = {"A": clips("A", 10), "B": clips("B", 27)}
    report = PseudoReport()
    plans = plan_sessions([session("A", "B")], pool, PseudoConversationConfig(seed=2, turns_per_dialogue=12), report)
    _check_plan(plans, pool)
    assert report.follow_up_turns == 17 and any("17 follow-up turns" in line for line in report.lines())
    assert [len(p.turns) for p in plans] == [14, 12, 11]  # 37 clips in 3 dialogues: 10 pairs, 17 follow-ups
    for p in plans:
        speakers = [t.clip.speaker for t in p.turns]
        # the smaller speaker never speaks twice in a row; the larger one takes the surplus
        assert all(not (a == b == "A") for a, b in zip(speakers, speakers[1:]))
        assert any(a == b == "B" for a, b in zip(speakers, speakers[1:]))
    assert ["".join(t.clip.speaker for t in p.turns) for p in plans] == PINNED_UNEQUAL


PINNED_UNEQUAL = ["BBBBABBABBABBA", "ABBBABBBABBB", "BBABBABBBBA"]


def test_sessions_are_independent_and_seeded():
    pool = {k: clips(k, 20) for k in "ABCD"}
    cfg = PseudoConversationConfig(seed=0, turns_per_dialogue=10)
    both = plan_sessions([session("A", "B"), session("C", "D")], pool, cfg)
    alone = plan_sessions([session("C", "D")], pool, cfg)

    def seq(plans):
        return [(p.dialogue_id, [(t.clip.stem, t.start_sample) for t in p.turns]) for p in plans if p.session == "c_C-D"]

    assert seq(both) == seq(alone)
    assert seq(plan_sessions([session("C", "D")], pool, PseudoConversationConfig(seed=1, turns_per_dialogue=10))) != seq(alone)


def test_speaker_without_clips_or_in_two_sessions_is_an_error():
    pool = {"A": clips("A", 4), "B": []}
    with pytest.raises(ManifestError, match="session c_A-B: speaker B has no clips"):
        plan_sessions([session("A", "B")], pool, PseudoConversationConfig())
    pool = {k: clips(k, 4) for k in "ABC"}
    with pytest.raises(ManifestError, match="speaker B is in sessions c_A-B and c_B-C"):
        plan_sessions([session("A", "B"), session("B", "C")], pool, PseudoConversationConfig())


def test_labels_decide_what_is_scored():
    pool = {"A": clips("A", 10), "B": clips("B", 10)}
    plans = plan_sessions([session("A", "B")], pool, PseudoConversationConfig(turns_per_dialogue=10))
    four = Counter(u.emotion for d in to_dialogues(plans, Path("/a"), "4") for u in d.utterances)
    seven = Counter(u.emotion for d in to_dialogues(plans, Path("/a"), "7") for u in d.utterances)
    assert four == {"neu": 4, "hap": 4, "sad": 4, "ang": 4, None: 4}
    assert seven == {"neu": 4, "hap": 4, "sad": 4, "ang": 4, "fea": 4}
    d = to_dialogues(plans, Path("/a"), "4")[0]
    assert d.audio == Path("/a/c_A-B_d01.wav") and d.utterances[0].text.startswith("t")


def test_config_is_checked():
    with pytest.raises(ManifestError, match="turns_per_dialogue must be >= 2"):
        PseudoConversationConfig(turns_per_dialogue=1)
    with pytest.raises(ManifestError, match="labels must be '4' or '7'"):
        PseudoConversationConfig(labels="6")
