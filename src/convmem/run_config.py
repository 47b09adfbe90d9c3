"""The experiment config: one YAML file (+ `key=value` overrides) describes a whole study.

Sections reuse the library's own dataclasses (SLMConfig, TrainConfig, DPMConfig, MALConfig, ...),
so a field has one definition and one default. Unknown keys and wrong types are errors naming the
dotted key (convmem.config).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Annotated, Literal

from convmem.audio.augment import SpeakerAugmentConfig
from convmem.config import Count, Range, Seed
from convmem.errors import ConfigError
from convmem.memory.mal import MALConfig
from convmem.memory.temp_lora import DPMConfig
from convmem.slm.classifier import ClassifierConfig
from convmem.slm.model import SLMConfig
from convmem.train.classifier_trainer import ClassifierTrainConfig
from convmem.train.loop import TrainConfig
from convmem.train.mal_trainer import MALTrainConfig

_NAME_FIELDS = {"synth_preset", "synth_seed"}  # what corpus.name may name


def _name_fields(name: str) -> set[str]:
    """The {fields} a format string names ("" for {}, the parse error for a stray brace)."""
    try:
        return {f for _, f, _, _ in string.Formatter().parse(name) if f is not None}
    except ValueError as e:
        return {f"({e})"}


@dataclass
class CorpusSection:
    """Where conversations come from.

    manifest: a manifest made by `convmem synth` or `convmem corpus ...` (relative to the config's
        working directory), or a list of them to train and evaluate on their union (e.g. several
        corpora; their session, dialogue and utterance ids must not collide). When empty, the
        synthetic corpus `synth_preset`/`synth_seed` is generated into `<out>/corpus` (once; a
        resumed run reuses it).
    """

    manifest: str | list[str] | None = None
    synth_preset: str = "default"
    synth_seed: Seed = 0
    labels: list[str] = field(default_factory=lambda: ["neu", "hap", "sad", "ang"])
    name: str = "synthetic (eSpeak NG pseudo-conversations, {synth_preset} preset, seed {synth_seed})"
    caveat: str = ""

    def __post_init__(self) -> None:
        if len(self.labels) < 2:
            raise ConfigError(f"corpus.labels: need at least 2 emotion labels, got {self.labels!r}")
        twice = sorted({x for x in self.labels if self.labels.count(x) > 1})
        if twice:
            # a label listed twice would get two emotion tokens and two logits for one class
            raise ConfigError(f"corpus.labels: duplicate label {twice[0]!r} in {self.labels!r}")
        bad = _name_fields(self.name) - _NAME_FIELDS
        if bad:
            raise ConfigError(f"corpus.name: only {{synth_preset}} and {{synth_seed}} may be filled in, "
                              f"got {self.name!r} ({', '.join(sorted(bad))})")
        if isinstance(self.manifest, list):
            if not self.manifest:
                raise ConfigError("corpus.manifest: an empty list (give a path, a list of paths, or nothing)")
            twice = sorted({m for m in self.manifest if self.manifest.count(m) > 1})
            if twice:
                raise ConfigError(f"corpus.manifest: {twice[0]} is listed twice")

    def manifests(self) -> list[str]:
        """The manifest paths to read, in order ([] = the synthetic corpus)."""
        if not self.manifest:
            return []
        return list(self.manifest) if isinstance(self.manifest, list) else [self.manifest]

    def title(self) -> str:
        """The corpus as reports and model cards name it. `{synth_preset}`/`{synth_seed}` in `name` are
        filled in, so `corpus.synth_seed=1` is not reported as seed 0; a run read from `manifest` is
        named by that manifest instead, because the generator settings then describe nothing."""
        if self.manifest and _name_fields(self.name):
            paths = self.manifests()
            return f"corpus from manifest{'s' if len(paths) > 1 else ''} {', '.join(paths)}"
        return self.name.format(synth_preset=self.synth_preset, synth_seed=self.synth_seed)


@dataclass
class FoldsSection:
    """scheme "loso": leave-one-session-out, `test_sessions` limits which folds run (None = all).
    scheme "official": the corpus's own train/dev/test sessions (MELD); MELD's speakers recur across
    its splits, so it needs `allow_speaker_overlap: true`, stated in the report.
    exclude_sessions: sessions the study never reads, neither to train nor to test: an inner,
    validation study (`exclude_sessions: [S05]`, `test_sessions: [S04]`) chooses settings on a
    training session while the real held-out session stays unseen (configs/dpm_sweep_synth.yaml)."""

    scheme: Literal["loso", "official"] = "loso"
    test_sessions: list[str] | None = None
    allow_speaker_overlap: bool = False
    exclude_sessions: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        both = sorted(set(self.exclude_sessions) & set(self.test_sessions or ()))
        if both:
            raise ConfigError(f"folds.exclude_sessions: {both[0]!r} is also in folds.test_sessions "
                              "(an excluded session is never read, so it cannot be tested)")


@dataclass
class TokenizerSection:
    """kind: any tokenizer kind (kmeans, whisper-kmeans, ssl-kmeans, s3, ...); `options` go to the
    tokenizer's constructor (e.g. codebook_size, model, layer, onnx_path). Fitted on each fold's training sessions."""

    kind: str = "kmeans"
    options: dict = field(default_factory=dict)


@dataclass
class EvalSection:
    """methods: any registered memory (memory/registry.py) plus names defined in dpm_variants (e.g.
    "dpm_stride": DPM with those DPMConfig overrides), and
    "majority" (the training sessions' most frequent class: the floor every method is tested against).
    batch_size: conversations per batch in the engine. emotion_tokens: the model's own predictions
    ("predicted", default) or "none" — gold tokens are never an option here."""

    methods: list[str] = field(default_factory=lambda: ["majority", "none", "window", "classifier", "dpm", "mal"])
    batch_size: Count = 8
    emotion_tokens: Literal["predicted", "none"] = "predicted"
    dpm_variants: dict = field(default_factory=dict)
    bootstrap: Count = 1000
    window_full_limit: Count | None = None  # None = the model's max positions
    # methods also run on VAD segmentation (silero-vad over the dialogue audio, predictions mapped
    # back to gold utterances by time overlap), reported as "<method>@vad" beside gold segmentation
    vad_methods: list[str] = field(default_factory=list)
    # the test dialogues' speakers: "gold" (the manifest's) or "auto" (diarised from the gold turns,
    # count estimated: speakers/gold_turns.py); training always reads gold speakers
    speakers: Literal["gold", "auto"] = "gold"


@dataclass
class CrossfitSection:
    """Cross-fitting inside each fold's training sessions (study/crossfit.py). folds: inner groups of
    whole training sessions; each gets a backbone trained on the others. Used by
    `train.emotion_tokens: predicted` (out-of-fold tokens in the training history). Default 2: each
    inner backbone trains on half the sessions, so together they cost about one more training; their
    tokens are, if anything, more often wrong than the full model's at test time."""

    folds: Annotated[int, Range(2)] = 2
    # MAL's adapter trains (and validates) on states of inner backbones that never heard the
    # dialogue's session; the final model keeps its backbone trained on every session
    mal: bool = False


@dataclass
class RunConfig:
    name: str = "run"
    out: str = "runs/{name}"
    seed: Seed = 0
    threads: Count | None = None  # torch threads; None = torch's default (all cores)
    final: bool = False  # also train a final model on every session
    # the final model's parts (e.g. [window, dpm, mal]: what predict/serve use); None = every evaluated method's
    final_methods: list[str] | None = None
    corpus: CorpusSection = field(default_factory=CorpusSection)
    folds: FoldsSection = field(default_factory=FoldsSection)
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    slm: SLMConfig = field(default_factory=SLMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # speaker-perturbed copies of the training dialogues for every trained part (SLM, classifier, MAL)
    augment: SpeakerAugmentConfig = field(default_factory=SpeakerAugmentConfig)
    # ClassifierConfig minus n_labels (that comes from corpus.labels); checked at load time
    classifier: dict = field(default_factory=dict)
    classifier_train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    dpm: DPMConfig = field(default_factory=DPMConfig)
    # MALConfig minus the vocabulary ids (emotion_ids, audio_id_range come from the model)
    mal: dict = field(default_factory=dict)
    mal_train: MALTrainConfig = field(default_factory=MALTrainConfig)
    crossfit: CrossfitSection = field(default_factory=CrossfitSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        # fail at load time, not after an hour of training
        if self.train.emotion_tokens == "none" and self.eval.emotion_tokens != "none":
            raise ConfigError("eval.emotion_tokens: must be 'none' when train.emotion_tokens is 'none' "
                              "(the model never saw emotion tokens in its history)")
        writes_emotion = [k for k, v in {"dpm": self.dpm.write_emotion, **{
            f"eval.dpm_variants.{n}": (o or {}).get("write_emotion", self.dpm.write_emotion)
            for n, o in self.eval.dpm_variants.items()}}.items() if v != "off"]
        if writes_emotion and self.eval.emotion_tokens == "none":
            raise ConfigError(f"{writes_emotion[0]}.write_emotion: needs eval.emotion_tokens 'predicted' "
                              "(with no emotion token in the history there is none to write)")
        if self.train.emotion_tokens == "predicted" and self.eval.emotion_tokens != "predicted":
            raise ConfigError("eval.emotion_tokens: must be 'predicted' when train.emotion_tokens is 'predicted' "
                              "(the model learned to read its own predictions in its history)")
        if self.final_methods is not None:
            from convmem.memory import registry

            known = registry.names()
            bad = [m for m in self.final_methods if m not in known]
            if bad:
                raise ConfigError(f"final_methods: unknown method {bad[0]!r} (known: {', '.join(known)})")
        if self.mal_train.copies and not (self.augment.speed or self.augment.tempo):
            raise ConfigError("mal_train.copies: the copies need a voice change (augment.speed or augment.tempo "
                              "> 0); a gain change alone leaves the voices the SLM trained on")
        if self.slm.reads_frames:
            from convmem.tokenizers.base import require_frames

            require_frames(self.tokenizer.kind)
        self.classifier_config()
        mal = self.mal_config(emotion_ids=(0,), audio_id_range=(0, 1))
        check_buildable(self.slm, self.train, self.dpm, mal, self.eval.dpm_variants)

    def classifier_config(self) -> ClassifierConfig:
        from convmem.config import from_dict

        return from_dict(ClassifierConfig, {**self.classifier, "n_labels": len(self.corpus.labels)}, "classifier")

    def mal_config(self, emotion_ids, audio_id_range) -> MALConfig:
        from convmem.config import from_dict

        ids = {"emotion_ids": tuple(emotion_ids), "audio_id_range": tuple(audio_id_range)}
        for key in ids:
            if key in self.mal:
                raise ConfigError(f"mal.{key}: comes from the trained model's vocabulary, do not set it")
        return from_dict(MALConfig, {**self.mal, **ids}, "mal")

    @property
    def out_dir(self) -> str:
        return self.out.format(name=self.name)


def check_buildable(slm: SLMConfig, train: TrainConfig, dpm: DPMConfig, mal: MALConfig, dpm_variants: dict) -> None:
    """What the sections say must be buildable together, checked when the config is loaded rather
    than after a tokenizer has been fitted: ConfigError naming the key."""
    if slm.is_tiny:  # a pretrained backbone brings its own shapes
        if slm.hidden_size % slm.num_heads:
            raise ConfigError(f"slm.hidden_size: {slm.hidden_size} is not divisible by slm.num_heads = {slm.num_heads}")
        head_dim = slm.hidden_size // slm.num_heads
        if head_dim % 2:
            raise ConfigError(f"slm.hidden_size: the head dimension hidden_size / num_heads = {slm.hidden_size} / "
                              f"{slm.num_heads} = {head_dim} must be even (rotary positions turn pairs of dimensions)")
        if slm.n_limit > slm.max_position_embeddings:
            raise ConfigError(f"slm.n_limit: {slm.n_limit} positions exceed slm.max_position_embeddings = "
                              f"{slm.max_position_embeddings}")
        if mal.layer is not None and not 0 <= mal.layer < slm.num_layers:
            raise ConfigError(f"mal.layer: {mal.layer} is not a layer of the SLM (slm.num_layers = {slm.num_layers})")
    if train.objective == "paper":
        try:
            train.windows.check(slm.n_limit)
        except ValueError as exc:
            raise ConfigError(f"train.n_o/n_p/n_q: {exc}") from None
    if mal.history_tokens >= slm.n_limit:
        raise ConfigError(f"mal.history_tokens: {mal.history_tokens} leaves no room for an utterance in "
                          f"slm.n_limit = {slm.n_limit}")
    # eq. 10 of the DPM paper, n_limit >= n_max + n_r: with utterances of >= 1 token, n_r < n_limit
    variants = {"dpm": dpm.n_r, **{f"eval.dpm_variants.{k}": (v or {}).get("n_r") for k, v in dpm_variants.items()
                                   if isinstance(v, dict)}}
    for where, n_r in variants.items():
        if isinstance(n_r, int) and n_r >= slm.n_limit:
            key = "dpm.n_r" if where == "dpm" else f"{where}.n_r"
            raise ConfigError(f"{key}: n_r = {n_r} must be < slm.n_limit = {slm.n_limit} (eq. 10 of the DPM paper, "
                              "n_limit >= n_max + n_r, leaves n_limit - n_r tokens per written chunk)")
