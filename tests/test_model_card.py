from pathlib import Path

from convmem.config import load_config
from convmem.corpus.types import Dialogue, Utterance
from convmem.model_card import render_card
from convmem.run_config import RunConfig

DEMO = Path(__file__).resolve().parents[1] / "configs" / "synth_default.yaml"


def _train() -> list[Dialogue]:
    utts = [Utterance(id=f"d_T{i}", speaker="A", start=float(i), end=i + 0.5, emotion="neu") for i in range(3)]
    return [Dialogue(dialogue_id="d", session="S01", audio="d.wav", utterances=utts)]


def test_card_names_the_corpus_seed_and_every_perturbation_used():
    cfg = load_config(RunConfig, DEMO, ["corpus.synth_seed=3", "augment.copies=2", "augment.tempo=0.3",
                                        "augment.pause=0.7"])
    card = render_card(cfg, {"fold": "loso_S05", "test_sessions": ["S05"]}, _train())
    assert "seed 3" in card and "Plus 2 speaker-perturbed copies" in card
    assert "tempo ×e^±0.3 at the same pitch" in card and "pauses ×e^±0.7" in card
    plain = render_card(load_config(RunConfig, DEMO, ["augment.copies=1"]), {"fold": "f"}, _train())
    assert "Plus 1 speaker-perturbed copy" in plain and "at the same pitch" not in plain and "pauses" not in plain


def test_card_says_when_the_model_reads_prosody_marks():
    marked = render_card(load_config(RunConfig, DEMO, []), {"fold": "f"}, _train())
    plain = render_card(load_config(RunConfig, DEMO, ["slm.prosody_marks=false"]), {"fold": "f"}, _train())
    assert "speaker-relative prosody marks" in marked and "prosody marks" not in plain
