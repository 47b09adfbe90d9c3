import json

import numpy as np
import pytest
import torch

from convmem.errors import ConfigError
from convmem.slm.model import SLMConfig, build_model, count_parameters, load_model, make_vocab, merged, save_model
from convmem.slm.stream import build_stream
from convmem.slm.windows import collate, paper_examples, WindowConfig

LABELS = ("neu", "hap", "sad", "ang")
SMALL = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, n_limit=64)


def _ids(vocab, n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(vocab.audio_offset, vocab.audio_end_id + 1, (2, n), generator=g)


def test_tiny_default_is_a_5m_llama_with_sdpa_and_rope():
    cfg = SLMConfig()
    vocab = make_vocab(cfg, codebook_size=1024, labels=LABELS)
    model = build_model(cfg, vocab)
    trainable, total = count_parameters(model)
    assert 4.0e6 < total < 6.0e6 and trainable == total  # tiny trains fully
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config._attn_implementation == "sdpa"
    assert model.config.rope_parameters["rope_theta"] == 10000.0
    assert model.get_input_embeddings().weight.shape[0] == vocab.size
    assert model(input_ids=_ids(vocab)).logits.shape == (2, 12, vocab.size)


def test_build_is_seeded_and_leaves_global_rng_alone():
    cfg = SLMConfig(**SMALL)
    vocab = make_vocab(cfg, 16, LABELS)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_model(cfg, vocab)
    assert torch.equal(torch.rand(1), before)
    b = build_model(cfg, vocab)
    c = build_model(SLMConfig(**SMALL, init_seed=1), vocab)
    wa, wb, wc = (m.model.layers[0].mlp.up_proj.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_tiny_save_load_roundtrip(tmp_path):
    cfg = SLMConfig(**SMALL)
    vocab = make_vocab(cfg, 16, LABELS)
    model = build_model(cfg, vocab).eval()
    out = save_model(model, tmp_path / "m")
    assert {"config.json", "model.safetensors", "vocab.json", "slm_config.json"} <= {p.name for p in out.iterdir()}
    loaded, v2, cfg2 = load_model(out)
    assert v2 == vocab and cfg2 == cfg and not loaded.training
    ids = _ids(vocab)
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, model(input_ids=ids).logits)
    save_model(model, out)  # overwriting is atomic and leaves no temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    with pytest.raises(ValueError, match="merged weights"):
        load_model(out, merge=False)
    (out / "vocab.json").unlink()
    with pytest.raises(ConfigError, match="missing vocab.json"):
        load_model(out)


def test_left_padded_batch_gives_the_same_logits_as_alone():
    cfg = SLMConfig(**SMALL)
    vocab = make_vocab(cfg, 16, LABELS)
    model = build_model(cfg, vocab).eval()
    rng = np.random.default_rng(0)
    stream = build_stream([rng.integers(0, 16, n) for n in (5, 9, 3)], vocab, ["neu", "ang", "sad"])
    ex = paper_examples(stream, vocab, WindowConfig(n_o=6, n_p=6, n_q=12))
    batch = collate(ex, vocab.pad_id, trim_logits=False)
    with torch.no_grad():
        together = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         position_ids=batch.position_ids).logits
        for b, e in enumerate(ex):
            alone = model(input_ids=e.ids[None]).logits[0]
            assert torch.allclose(together[b, -len(e.ids):], alone, atol=1e-5)


def _hf_backbone(path, tied: bool, model_vocab: int):
    """A tiny random Llama + word-level tokenizer saved like a pretrained checkpoint (nothing downloaded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    words = {"<unk>": 0, "<pad>": 1, "</s>": 2, "hello": 3, "world": 4}
    tk = Tokenizer(models.WordLevel(vocab=words, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>",
                            eos_token="</s>").save_pretrained(path)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=model_vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=tied)
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize("tied, model_vocab", [(False, 8), (True, 40)])
def test_hf_backbone_expanded_lora_trains_new_rows_only_and_merges(tmp_path, tied, model_vocab):
    backbone = _hf_backbone(tmp_path / "base", tied, model_vocab)
    cfg = SLMConfig(backbone=str(backbone), lora_r=4, lora_alpha=4)
    vocab = make_vocab(cfg, codebook_size=6, labels=LABELS)
    assert (vocab.base_size, vocab.size) == (5, 16)
    model = build_model(cfg, vocab)
    emb_rows = max(model_vocab, vocab.size)
    assert model.get_input_embeddings().weight.shape[0] == emb_rows  # resized, padding rows kept
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or "trainable_tokens_delta" in n for n in names)
    assert any("lora_" in n for n in names) and any("trainable_tokens_delta" in n for n in names)
    base = merged(model)  # untrained: merging is the identity on the base rows
    base_emb = base.get_input_embeddings().weight.detach().clone()
    base_head = base.get_output_embeddings().weight.detach().clone()

    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = _ids(vocab, n=10, seed=1)
    for _ in range(3):
        logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        deltas = [p.grad for n, p in model.named_parameters() if "trainable_tokens_delta" in n]
        assert all(g is not None and g.abs().sum() > 0 for g in deltas)  # gradients reach the new rows
        opt.step()

    model.eval()
    plain = merged(model)
    emb, head = plain.get_input_embeddings().weight, plain.get_output_embeddings().weight
    new = list(vocab.new_token_ids)
    assert torch.equal(emb[:vocab.base_size], base_emb[:vocab.base_size])  # text rows frozen
    assert torch.equal(head[:vocab.base_size], base_head[:vocab.base_size])
    assert not torch.allclose(emb[new], base_emb[new]) and not torch.allclose(head[new], base_head[new])
    with torch.no_grad():
        want = model(input_ids=ids).logits
        assert torch.allclose(plain(input_ids=ids).logits, want, atol=1e-5)  # fp32 merge
        out = save_model(model, tmp_path / "slm")
        loaded, v2, cfg2 = load_model(out)
        assert v2 == vocab and cfg2.backbone == str(backbone)
        assert torch.allclose(loaded(input_ids=ids).logits, want, atol=1e-5)
    assert len(loaded.slm_tokenizer) == vocab.size
    assert json.loads((out / "vocab.json").read_text())["base_size"] == 5


def test_hf_backbone_errors(tmp_path):
    with pytest.raises(ConfigError, match="neither 'tiny', a packaged checkpoint"):
        make_vocab(SLMConfig(backbone=str(tmp_path / "nope")), 4, LABELS)
    backbone = _hf_backbone(tmp_path / "base", False, 8)
    cfg = SLMConfig(backbone=str(backbone))
    wrong = make_vocab(SLMConfig(), 4, LABELS)
    with pytest.raises(ConfigError, match="does not match backbone"):
        build_model(cfg, wrong)
