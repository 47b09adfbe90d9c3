"""configs/dpm_sweep_synth.yaml is the pre-declared DPM sweep it says it is: the demo's corpus and
model, S05 never read, chosen on S04, the paper's DPM setting and variants that change one setting
each."""

from __future__ import annotations

from pathlib import Path

import pytest

from convmem.config import from_dict, load_config, to_dict
from convmem.memory.temp_lora import DPMConfig
from convmem.run_config import RunConfig
from convmem.study.methods import method_list

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SWEEP = CONFIGS / "dpm_sweep_synth.yaml"
PAPER = DPMConfig()  # the paper's settings are DPMConfig's defaults (memory/temp_lora.py)


@pytest.fixture(scope="module")
def configs() -> tuple[RunConfig, RunConfig]:
    return load_config(RunConfig, SWEEP), load_config(RunConfig, CONFIGS / "synth_default.yaml")


def test_header_is_its_command_and_the_model_is_the_demos(configs):
    sweep, demo = configs
    assert SWEEP.read_text(encoding="utf-8").splitlines()[0] == "# convmem run configs/dpm_sweep_synth.yaml"
    for section in ("corpus", "tokenizer", "slm", "train", "augment"):
        assert getattr(sweep, section) == getattr(demo, section), section
    assert sweep.eval.emotion_tokens == demo.eval.emotion_tokens


def test_the_held_out_session_is_never_read_and_choice_is_on_a_training_session(configs):
    sweep, demo = configs
    assert demo.folds.test_sessions == ["S05"]
    assert sweep.folds.exclude_sessions == ["S05"] and sweep.folds.test_sessions == ["S04"]
    assert sweep.final is False


def test_dpm_is_the_papers_setting_and_each_variant_changes_one_setting(configs):
    sweep, demo = configs
    base = to_dict(sweep.dpm)
    assert {**base, "n_r": PAPER.n_r} == to_dict(PAPER)  # the paper's setting, at the demo's n_r
    assert sweep.dpm.n_r == demo.dpm.n_r and (sweep.dpm.rank, sweep.dpm.lr) == (64, 5e-5)
    variants = sweep.eval.dpm_variants
    assert len(variants) <= 7
    changed = {}
    for name, overrides in variants.items():
        cfg = to_dict(from_dict(DPMConfig, {**base, **overrides}, f"eval.dpm_variants.{name}"))
        diff = [k for k in base if cfg[k] != base[k]]
        assert len(diff) == 1, (name, diff)
        changed.setdefault(diff[0], []).append(cfg[diff[0]])
    assert sorted(changed["lr"]) == [2e-4, 1e-3]
    assert changed["n_r"] == [2 * demo.dpm.n_r] and changed["steps_per_write"] == [2]
    assert changed["stepping"] == ["surprise"] and "dpm_surprise" in variants
    assert method_list(sweep) == ["majority", "none", "window", "dpm", *variants]


def test_attention_only_targets_are_the_attention_projections_of_the_demo_model(configs):
    from convmem.memory.batched_lora import find_lora_targets
    from convmem.slm.model import build_model, make_vocab

    sweep, _ = configs
    attention = [v["target_modules"] for v in sweep.eval.dpm_variants.values() if "target_modules" in v]
    assert len(attention) == 1
    model = build_model(sweep.slm, make_vocab(sweep.slm, 256, tuple(sweep.corpus.labels)))
    chosen = find_lora_targets(model, attention[0])
    every = find_lora_targets(model, sweep.dpm.target_modules)
    assert {t.name.rsplit(".", 1)[-1] for t in chosen} == {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert len(chosen) == 4 * sweep.slm.num_layers < len(every)
