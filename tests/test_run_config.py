import re
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


def test_a_run_folder_with_results_resumes_after_a_descriptive_change_only(tmp_path):
    from convmem.study.run_folder import claim_run_folder

    claim_run_folder(tmp_path, load_config(RunConfig, DEMO))
    (tmp_path / "folds" / "S01" / "model").mkdir(parents=True)
    (tmp_path / "folds" / "S01" / "model" / "bundle.json").write_text("{}")
    claim_run_folder(tmp_path, load_config(RunConfig, DEMO, ["corpus.name=renamed", "corpus.caveat=c"]))
    # more folds of the same study: each fold's parts depend only on its own sessions
    claim_run_folder(tmp_path, load_config(RunConfig, DEMO, ["folds.test_sessions=null"]))
    with pytest.raises(ConfigError, match=r"differs at: folds\.exclude_sessions"):
        claim_run_folder(tmp_path, load_config(RunConfig, DEMO, ["folds.exclude_sessions=[S04]"]))
    # a folder recorded before a setting existed resumes while that setting is at its default
    import json

    recorded = json.loads((tmp_path / "config.json").read_text())
    del recorded["folds"]["exclude_sessions"]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    claim_run_folder(tmp_path, load_config(RunConfig, DEMO))
    with pytest.raises(ConfigError, match=r"differs at: folds\.exclude_sessions"):
        claim_run_folder(tmp_path, load_config(RunConfig, DEMO, ["folds.exclude_sessions=[S04]"]))
    with pytest.raises(ConfigError, match=r"different config \(differs at: corpus\.synth_seed\) and its "
                                          r"results \(folds/S01/model/bundle.json\)"):
        claim_run_folder(tmp_path, load_config(RunConfig, DEMO, ["corpus.synth_seed=1"]))


def test_a_failed_run_does_not_lock_its_folder(tmp_path, capsys):
    """A run that stops before leaving anything a rerun would reuse: the corrected config takes the
    folder (today's failure mode: "holds a run with a different config")."""
    from convmem.cli import main

    out = tmp_path / "run"
    assert main(["run", str(DEMO), f"corpus.manifest={tmp_path / 'typo.jsonl'}", "--out", str(out)]) == 2
    assert "typo.jsonl: manifest not found" in capsys.readouterr().err
    assert (out / "config.json").exists()
    (tmp_path / "empty.jsonl").write_text("")
    assert main(["run", str(DEMO), f"corpus.manifest={tmp_path / 'empty.jsonl'}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different config" not in err and "empty.jsonl: no dialogues" in err
    # a generated corpus is reused by a rerun: a corpus change is refused once it exists
    from convmem.study.run_folder import claim_run_folder

    claim_run_folder(out, load_config(RunConfig, DEMO))
    (out / "corpus").mkdir()
    (out / "corpus" / "manifest.jsonl").write_text("{}\n")
    claim_run_folder(out, load_config(RunConfig, DEMO, ["train.lr=1.0e-3"]))
    with pytest.raises(ConfigError, match=r"differs at: corpus\.synth_seed.*results \(corpus\)"):
        claim_run_folder(out, load_config(RunConfig, DEMO, ["train.lr=1.0e-3", "corpus.synth_seed=4"]))


@pytest.mark.parametrize("override, message", [
    ("train.lr=-1", r"train\.lr: -1\.0 is out of range, expected > 0"),
    ("train.epochs=-3", r"train\.epochs: -3 is out of range, expected >= 1"),
    ("slm.n_limit=0", r"slm\.n_limit: 0 is out of range, expected >= 1"),
    ("slm.lora_dropout=1.5", r"slm\.lora_dropout: 1\.5 is out of range, expected in \[0, 1\)"),
    ("dpm.betas=[0.9, 1.0]", r"dpm\.betas\[1\]: 1\.0 is out of range"),
    ("mal_train.tbptt=0", r"mal_train\.tbptt: 0 is out of range"),
    ("mal={memory: {depth: 1}}", r"mal\.memory\.depth: 1 is out of range, expected >= 2"),
    ("classifier={dropout: -0.1}", r"classifier\.dropout: -0\.1 is out of range"),
    ("augment.copies=17", r"augment\.copies: 17 is out of range, expected in \[0, 16\]"),
    ("eval.batch_size=0", r"eval\.batch_size: 0 is out of range"),
    ("threads=0", r"threads: 0 is out of range"),
    ("seed=-1", r"seed: -1 is out of range"),
    ("train.weight_decay=.nan", r"train\.weight_decay: expected a finite number"),
    ("corpus.labels=[neu, hap, neu]", r"corpus\.labels: duplicate label 'neu'"),
    ("corpus.labels=[neu]", r"corpus\.labels: need at least 2"),
])
def test_out_of_range_values_are_refused_naming_the_dotted_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RunConfig, DEMO, [override])


def test_every_numeric_field_of_a_run_config_has_a_range():
    """Ranges live on the fields (convmem.config.Range): a new numeric field without one fails here."""
    import dataclasses
    import typing

    from convmem.config import Range
    from convmem.memory.mal import MALConfig
    from convmem.slm.classifier import ClassifierConfig

    def numeric_without_range(tp, key) -> list[str]:
        if typing.get_origin(tp) is typing.Annotated:
            inner, *extras = typing.get_args(tp)
            return [] if any(isinstance(e, Range) for e in extras) else numeric_without_range(inner, key)
        if tp in (int, float):
            return [key]
        if dataclasses.is_dataclass(tp):
            return walk(tp, key)
        return [k for a in typing.get_args(tp) if a is not Ellipsis for k in numeric_without_range(a, key)]

    def walk(cls, where) -> list[str]:
        hints = typing.get_type_hints(cls, include_extras=True)
        return [k for f in dataclasses.fields(cls) for k in numeric_without_range(hints[f.name], f"{where}{f.name}")]

    missing = walk(RunConfig, "") + walk(ClassifierConfig, "classifier.") + walk(MALConfig, "mal.")
    assert missing == []


def test_train_command_applies_threads(monkeypatch, tmp_path):
    import torch

    import convmem.study.folds as folds
    import convmem.study.training as training
    from convmem.cli import main

    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    monkeypatch.setattr(folds, "corpus_dialogues", lambda *a, **k: [])
    monkeypatch.setattr(training, "train_fold_models", lambda *a, **k: tmp_path)
    assert main(["train", str(DEMO), "threads=3", "--out", str(tmp_path / "model")]) == 0
    assert seen == [3]


def test_a_mix_of_manifests_is_read_as_one_corpus(tmp_path):
    from convmem.corpus.manifest import write_manifest
    from convmem.corpus.types import Dialogue, Utterance
    from convmem.study.folds import corpus_dialogues
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


@pytest.mark.parametrize("overrides, says", [
    (["slm.hidden_size=100"], "slm.hidden_size: the head dimension hidden_size / num_heads = 100 / 4 = 25 must be even"),
    (["slm.hidden_size=90", "slm.num_heads=4"], "slm.hidden_size: 90 is not divisible by slm.num_heads = 4"),
    (["slm.n_limit=4096", "slm.max_position_embeddings=2048"], "slm.n_limit: 4096 positions exceed slm.max_position_embeddings"),
    (["mal.layer=4"], "mal.layer: 4 is not a layer of the SLM (slm.num_layers = 4)"),
    (["dpm.n_r=1024"], "dpm.n_r: n_r = 1024 must be < slm.n_limit = 1024 (eq. 10"),
    (["eval.dpm_variants={wide: {n_r: 2000}}"], "eval.dpm_variants.wide.n_r: n_r = 2000 must be < slm.n_limit"),
    (["train.objective=paper", "train.n_q=2048"], "train.n_o/n_p/n_q: windows exceed the model's n_limit 1024"),
    (["mal.history_tokens=1024"], "mal.history_tokens: 1024 leaves no room"),
])
def test_a_config_that_cannot_build_its_model_is_refused_at_load_naming_the_key(overrides, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(RunConfig, None, overrides)


def test_every_shipped_config_builds():
    for path in sorted((DEMO.parent).glob("*.yaml")):
        if "ablation" in path.name:
            continue  # an ablation config, not a run config (study/ablation.py)
        load_config(RunConfig, path)
