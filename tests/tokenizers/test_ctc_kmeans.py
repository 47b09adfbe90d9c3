"""`ctc-kmeans`: a recogniser trained on transcripts, its hidden states clustered into 25 Hz codes."""

from __future__ import annotations

import difflib

import numpy as np
import pytest

from convmem.errors import ConfigError
from convmem.tokenizers import build_tokenizer, fit_on_dialogues, load_tokenizer
from convmem.tokenizers.ctc_kmeans import ALPHABET, CTCKMeansTokenizer, characters
from tests.tokenizers.conftest import speechlike

# ctc_hz 25: on these 96 two-word phrases 20 epochs train the 25 Hz recogniser to read unseen
# voices; the 50 Hz default is for real turns (tested below and in test_benchmarks_smoke)
SMALL = {"codebook_size": 32, "hidden": 48, "epochs": 20, "lr": 3e-3, "batch_size": 4, "ctc_hz": 25}
PHRASES = ("red apple", "blue house", "green tree", "yellow sun")


def _say(text: str, variant: str, pitch: int = 50, rate: int = 170) -> np.ndarray:
    from convmem.corpus.espeak import VoiceSettings, synthesize

    return synthesize(text, VoiceSettings(voice=f"en-us+{variant}", pitch=pitch, rate=rate))


@pytest.fixture(scope="module")
def phrases():
    """Four phrases by six eSpeak voices at two pitches and two rates: (waves, texts, sample rate)."""
    from convmem.corpus.espeak import native_sample_rate

    said = [(_say(p, v, pitch, rate), p) for v in ("m1", "m3", "f1", "f2", "m6", "f5") for pitch in (35, 65)
            for rate in (150, 190) for p in PHRASES]
    return [w for w, _ in said], [t for _, t in said], native_sample_rate()


@pytest.fixture(scope="module")
def fitted(phrases):
    """Fitted on one thread whatever earlier tests left torch at: a module fixture is built before
    the per-test one-thread fixture, and the thread count changes the float sums of training."""
    import torch

    waves, texts, sr = phrases
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return build_tokenizer("ctc-kmeans", **SMALL).fit(waves, sr, texts=texts)
    finally:
        torch.set_num_threads(before)


def _char_error(hyp: str, ref: str) -> float:
    h, r = characters(hyp), characters(ref)
    same = sum(b.size for b in difflib.SequenceMatcher(None, h, r, autojunk=False).get_matching_blocks())
    return 1 - same / max(len(h), len(r), 1)


def test_characters():
    assert characters("Hi, it's 5 O'Clock!") == [ALPHABET.index(c) + 1 for c in "hi it's o'clock"]
    assert characters("...") == []


def test_ten_seconds_give_250_codes_and_a_round_trip(fitted, tmp_path):
    codes = fitted.encode(speechlike(10.0, seed=3), 16000)
    assert codes.shape == (250,) and codes.dtype == np.int64 and 0 <= codes.min() and codes.max() < 32
    assert fitted.encode(speechlike(10.0, seed=3, sr=48000), 48000).shape == (250,)
    assert fitted.encode(speechlike(0.05, seed=3), 16000).shape == (1,)
    fitted.save(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert isinstance(back, CTCKMeansTokenizer) and back.fingerprint == fitted.fingerprint
    np.testing.assert_array_equal(back.encode(speechlike(10.0, seed=3), 16000), codes)


def test_voices_it_never_heard_are_read_and_coded_alike(fitted):
    from convmem.corpus.espeak import native_sample_rate

    sr = native_sample_rate()
    for variant in ("m5", "f4"):  # voices not in training
        for p in PHRASES:
            hyp = fitted.transcribe(_say(p, variant), sr)
            assert min(PHRASES, key=lambda q: _char_error(hyp, q)) == p, (variant, p, hyp)
            assert _char_error(hyp, p) < 0.3, (variant, p, hyp)

    def bag(p, variant):
        codes = fitted.encode(_say(p, variant), sr)
        return np.bincount(codes, minlength=32) / codes.size

    # the same phrase by two unseen voices shares more codes than two phrases by one voice
    same = np.mean([np.minimum(bag(p, "m5"), bag(p, "f4")).sum() for p in PHRASES])
    other = np.mean([np.minimum(bag(p, v), bag(q, v)).sum() for v in ("m5", "f4") for p in PHRASES
                     for q in PHRASES if p < q])
    assert same > other + 0.1, (same, other)


def test_fit_is_deterministic_and_the_fingerprint_follows_the_weights(phrases):
    waves, texts, sr = phrases
    quick = {**SMALL, "epochs": 2}
    a = build_tokenizer("ctc-kmeans", **quick).fit(waves, sr, texts=texts)
    b = build_tokenizer("ctc-kmeans", **quick).fit(waves, sr, texts=texts)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.encode(waves[0], sr), b.encode(waves[0], sr))
    assert build_tokenizer("ctc-kmeans", **{**quick, "seed": 1}).fit(waves, sr, texts=texts).fingerprint != a.fingerprint


def test_fit_on_dialogues_passes_the_transcripts(tmp_path, capsys):
    from convmem.cli import main
    from convmem.corpus.manifest import read_manifest

    out = tmp_path / "tiny"
    assert main(["synth", str(out), "--preset", "tiny", "--seed", "0", "--quiet", "--workers", "1"]) == 0
    corpus = read_manifest(out / "manifest.jsonl")
    seen = {}
    tok = build_tokenizer("ctc-kmeans", **{**SMALL, "epochs": 1})
    fit = tok.fit

    def spy(waves, sr, texts=None, progress=True):
        seen["texts"], seen["progress"] = list(texts), progress
        return fit(waves, sr, texts=texts, progress=progress)

    tok.fit = spy
    capsys.readouterr()
    fit_on_dialogues(tok, corpus, ["S01"], progress=False)
    assert seen["texts"] == [u.text for d in corpus if d.session == "S01" for u in d.utterances]
    assert seen["progress"] is False and "recogniser" not in capsys.readouterr().err
    for d in corpus:
        for u in d.utterances:
            u.text = None
    with pytest.raises(ConfigError, match="no utterance has a transcript"):
        fit_on_dialogues(build_tokenizer("ctc-kmeans", **SMALL), corpus, ["S01"], progress=False)


def test_errors(phrases, tmp_path):
    tok = build_tokenizer("ctc-kmeans", **SMALL)
    with pytest.raises(ConfigError, match="not fitted"):
        tok.encode(speechlike(1.0), 16000)
    waves = [speechlike(2.0, seed=i) for i in range(3)]
    with pytest.raises(ConfigError, match="one transcript per waveform"):
        tok.fit(waves, 16000, texts=["a b"])
    with pytest.raises(ConfigError, match="no utterance has a transcript"):
        tok.fit(waves, 16000, texts=[None, "", "!!"])
    with pytest.raises(ValueError, match="invalid ctc-kmeans config"):
        build_tokenizer("ctc-kmeans", tempo_perturb=0.9)
    waves, texts, sr = phrases
    fitted = build_tokenizer("ctc-kmeans", **{**SMALL, "epochs": 1}).fit(waves, sr, texts=texts)
    fitted.save(tmp_path / "tok")
    (tmp_path / "tok" / "encoder.pt").unlink()
    with pytest.raises(ConfigError, match="recogniser weights not found"):
        load_tokenizer(tmp_path / "tok")


def test_posterior_states_cluster_character_posteriors(fitted, phrases, tmp_path):
    import dataclasses

    from convmem.tokenizers.kmeans import KMeansCodebook

    post = CTCKMeansTokenizer(dataclasses.replace(fitted.config, states="posteriors"), model=fitted.model)
    wave = speechlike(3.0, seed=5)
    with pytest.raises(ConfigError, match="not fitted"):
        post.encode(wave, 16000)
    post.codebook = fitted.codebook  # only for features(); its size is the hidden width
    feats = post.features(wave)
    assert feats.shape == (75, len(ALPHABET) + 1)
    np.testing.assert_allclose(np.exp(feats).sum(axis=1), 1.0, rtol=1e-5)  # log posteriors
    assert fitted.features(wave).shape[1] == fitted.model.out.in_features  # hidden states
    waves, _, sr = phrases
    from convmem.tokenizers.base import iter_waveforms

    post.codebook = KMeansCodebook.fit((post._states(post.log_mel(w)) for w in iter_waveforms(waves[:8], sr)),
                                       8, 0, 10_000, 1)
    post.config = dataclasses.replace(post.config, codebook_size=8)
    post.save(tmp_path / "post")
    back = load_tokenizer(tmp_path / "post")
    assert back.config.states == "posteriors" and back.fingerprint == post.fingerprint
    np.testing.assert_array_equal(back.encode(wave, 16000), post.encode(wave, 16000))
    assert back.fingerprint != fitted.fingerprint
    with pytest.raises(ValueError, match="states must be"):
        build_tokenizer("ctc-kmeans", states="logits")


@pytest.mark.parametrize("hz", [25, 50])
def test_ctc_frames_follow_the_recogniser_rate(hz):
    import torch

    from convmem.tokenizers.ctc_kmeans import CTCKMeansConfig, _ctc_frames, encoder

    model = encoder(CTCKMeansConfig(hidden=16, ctc_hz=hz)).eval()
    lengths = torch.tensor([4, 5, 7, 8, 41, 400])
    with torch.no_grad():
        got = [model(torch.zeros(1, int(n), 80))[1].shape[1] for n in lengths]
    assert _ctc_frames(lengths, hz).tolist() == got
    assert got[-1] == 400 * hz // 100
    with pytest.raises(ValueError, match="ctc_hz must be 25 or 50"):
        CTCKMeansConfig(ctc_hz=100)


def test_fast_speech_fits_ctc_only_at_50_hz():
    """26 characters with four doubled letters need 30 CTC frames (a blank between doubles): 1.1 s
    gives 28 at 25 Hz, so CTC cannot align them (the 25 Hz recogniser's training skipped such
    fast turns: zero_infinity), and 55 at 50 Hz."""
    import torch

    from convmem.tokenizers.ctc_kmeans import CTCKMeansConfig, encoder

    target = torch.tensor(characters("all good, see you soon then"))
    assert len(target) == 26
    losses = {}
    for hz in (25, 50):
        torch.manual_seed(0)
        with torch.no_grad():
            _, logits = encoder(CTCKMeansConfig(hidden=16, ctc_hz=hz))(torch.randn(1, 110, 80))
        loss = torch.nn.CTCLoss(reduction="sum")(logits.log_softmax(-1).transpose(0, 1), target,
                                                  torch.tensor([logits.shape[1]]), torch.tensor([len(target)]))
        losses[hz] = float(loss)
    assert losses == {25: float("inf"), 50: losses[50]} and np.isfinite(losses[50]), losses


def test_a_tokenizer_saved_before_ctc_hz_loads_at_25_hz_with_its_fingerprint(phrases, tmp_path):
    import json

    waves, texts, sr = phrases
    old = build_tokenizer("ctc-kmeans", **{**SMALL, "epochs": 1, "ctc_hz": 25}).fit(waves[:16], sr, texts=texts[:16])
    old.save(tmp_path / "tok")
    meta = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    del meta["config"]["ctc_hz"]  # as the first release wrote it
    (tmp_path / "tok" / "tokenizer.json").write_text(json.dumps(meta))
    back = load_tokenizer(tmp_path / "tok")
    assert back.config.ctc_hz == 25 and back.fingerprint == old.fingerprint == meta["fingerprint"]
    np.testing.assert_array_equal(back.encode(waves[0], sr), old.encode(waves[0], sr))
    assert build_tokenizer("ctc-kmeans").config.ctc_hz == 50


def test_at_50_hz_each_code_reads_two_recogniser_frames():
    import dataclasses

    import torch

    from convmem.tokenizers.ctc_kmeans import CTCKMeansConfig, encoder
    from convmem.tokenizers.kmeans import KMeansCodebook

    torch.manual_seed(0)
    cfg = CTCKMeansConfig(hidden=24, ctc_hz=50, codebook_size=4)
    hid = CTCKMeansTokenizer(cfg, KMeansCodebook(np.zeros((4, 32), np.float32), np.zeros(32, np.float32),
                                                 np.ones(32, np.float32)), encoder(cfg).eval())
    wave = speechlike(3.0, seed=5)
    mel = torch.from_numpy(hid.log_mel(wave))[None]
    with torch.no_grad():
        h, logits = hid.model(mel)
    assert h.shape[1] == 150
    np.testing.assert_allclose(hid.features(wave), h[0].reshape(75, 2, -1).mean(1).numpy(), rtol=1e-5, atol=1e-6)
    post = CTCKMeansTokenizer(dataclasses.replace(cfg, states="posteriors"), hid.codebook, hid.model)
    probs = torch.softmax(logits[0], -1).reshape(75, 2, -1).mean(1).numpy()
    np.testing.assert_allclose(np.exp(post.features(wave)), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert hid.encode(wave, 16000).shape == (75,)
