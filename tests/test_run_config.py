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


def test_a_mix_of_manifests_is_read_as_one_corpus(tmp_path):
    from convmem.corpus.manifest import write_manifest
    from convmem.corpus.types import Dialogue, Utterance
    from convmem.eval.runner import corpus_dialogues
    from tests.conftest import make_tone

    import soundfile as sf

    paths = []
    for corpus in ("ravdess", "turev"):
        sf.write(tmp_path / f"{corpus}.wav", make_tone(1.0), 16000)
        d = Dialogue(f"{corpus}_d1", f"{corpus}_S1", [Utterance(f"{corpus}_u1", f"{corpus}_A", 0.0, 0.5, "neu")],
                     audio=tmp_path / f"{corpus}.wav")
        paths.append(str(write_manifest(tmp_path / f"{corpus}.jsonl", [d])))
    cfg = load_config(RunConfig, DEMO, [f"corpus.manifest=[{paths[0]}, {paths[1]}]"])
    assert cfg.corpus.manifests() == paths and cfg.corpus.title() == f"corpus from manifests {paths[0]}, {paths[1]}"
    assert [d.session for d in corpus_dialogues(cfg, tmp_path / "unused")] == ["ravdess_S1", "turev_S1"]
    assert load_config(RunConfig, DEMO, [f"corpus.manifest={paths[0]}"]).corpus.manifests() == [paths[0]]
    with pytest.raises(ConfigError, match="corpus.manifest: an empty list"):
        load_config(RunConfig, DEMO, ["corpus.manifest=[]"])
    with pytest.raises(ConfigError, match="corpus.manifest: a.jsonl is listed twice"):
        load_config(RunConfig, DEMO, ["corpus.manifest=[a.jsonl, a.jsonl]"])


def test_the_multilingual_config_reads_what_its_header_builds():
    path = DEMO.parent / "real_multilingual.yaml"
    cfg = load_config(RunConfig, path)
    header = path.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ").split(" && ")
    built = [cmd.split()[-1] + "/manifest.jsonl" for cmd in header if cmd.startswith("convmem corpus ")]
    assert sorted(built) == sorted(cfg.corpus.manifests()) == ["data/nemo/manifest.jsonl", "data/ravdess/manifest.jsonl",
                                                              "data/turev/manifest.jsonl"]
    assert header[-1] == "convmem run configs/real_multilingual.yaml"
    ravdess = load_config(RunConfig, DEMO.parent / "ravdess.yaml")
    assert cfg.tokenizer == ravdess.tokenizer and cfg.slm == ravdess.slm and cfg.train == ravdess.train


def test_frames_input_needs_a_tokenizer_that_offers_frames():
    with pytest.raises(ConfigError, match="'kmeans' offers codes only"):
        load_config(RunConfig, DEMO, ["tokenizer.kind=kmeans", "slm.audio_input=frames"])
    with pytest.raises(ConfigError, match="audio_input"):
        load_config(RunConfig, DEMO, ["slm.audio_input=wave"])
    cfg = load_config(RunConfig, DEMO, ["tokenizer.kind=whisper-kmeans", "slm.audio_input=frames"])
    assert cfg.slm.reads_frames and not load_config(RunConfig, DEMO).slm.reads_frames
