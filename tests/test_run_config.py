from pathlib import Path

import pytest

from convmem.config import load_config
from convmem.errors import ConfigError
from convmem.run_config import RunConfig

DEMO = Path(__file__).resolve().parents[1] / "configs" / "synth_default.yaml"


def test_corpus_title_follows_the_seed_it_was_generated_with():
    assert "seed 0" in load_config(RunConfig, DEMO).corpus.title()
    title = load_config(RunConfig, DEMO, ["corpus.synth_seed=2"]).corpus.title()
    assert "seed 2" in title and "seed 0" not in title
    assert "small preset" in load_config(RunConfig, DEMO, ["corpus.synth_preset=small"]).corpus.title()


def test_corpus_from_a_manifest_is_not_named_by_generator_settings():
    title = load_config(RunConfig, DEMO, ["corpus.manifest=/data/s1/manifest.jsonl"]).corpus.title()
    assert title == "corpus from manifest /data/s1/manifest.jsonl"
    # a name written for the data (no generator fields in it) is kept as written
    cfg = load_config(RunConfig, DEMO, ["corpus.manifest=m.jsonl", "corpus.name=IEMOCAP sessions 1-5"])
    assert cfg.corpus.title() == "IEMOCAP sessions 1-5"
    # doubled braces are literal braces, not generator fields
    cfg = load_config(RunConfig, DEMO, ["corpus.manifest=m.jsonl", "corpus.name=set {{A, B}}"])
    assert cfg.corpus.title() == "set {A, B}"


@pytest.mark.parametrize("name", ["seed {seed}", "x {0}", "x {}", "open {brace", "close brace}"])
def test_unknown_fields_in_the_corpus_name_are_a_config_error(name):
    with pytest.raises(ConfigError, match=r"corpus\.name: only \{synth_preset\} and \{synth_seed\}"):
        load_config(RunConfig, DEMO, [f"corpus.name={name}"])


def test_a_run_folder_resumes_after_a_descriptive_change_only(tmp_path):
    from convmem.eval.runner import _check_or_write_config

    _check_or_write_config(tmp_path, load_config(RunConfig, DEMO))
    _check_or_write_config(tmp_path, load_config(RunConfig, DEMO, ["corpus.name=renamed", "corpus.caveat=c"]))
    with pytest.raises(ConfigError, match=r"different config \(differs at: corpus\.synth_seed\)"):
        _check_or_write_config(tmp_path, load_config(RunConfig, DEMO, ["corpus.synth_seed=1"]))
