"""`convmem tokenize MANIFEST --tokenizer DIR`: fill the code cache for every utterance.

With `--fit KIND --sessions S1 S2 ...` a new tokenizer is first fitted on those (training)
sessions only and saved to DIR; without it DIR is a saved tokenizer (or, for `s3`, the CosyVoice2
`speech_tokenizer_v2.onnx` file or its folder). A rerun reads codes from the cache instead of
tokenizing again.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("tokenize", help="turn every utterance of a manifest into cached 25 Hz codes",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("manifest", type=Path, help="manifest JSONL")
    p.add_argument("--tokenizer", type=Path, required=True, help="tokenizer directory (written with --fit)")
    p.add_argument("--cache", type=Path, default=None,
                   help="code cache folder (default: $CONVMEM_CACHE/codes or ~/.cache/convmem/codes)")
    fit = p.add_argument_group("fitting a new tokenizer")
    fit.add_argument("--fit", choices=("kmeans", "kmeans-f0", "whisper-kmeans", "ssl-kmeans", "ctc-kmeans"), default=None,
                     help="fit this kind first (ctc-kmeans learns from the manifest's transcripts)")
    fit.add_argument("--sessions", nargs="+", default=None, help="training sessions to fit on (required with --fit)")
    fit.add_argument("--codebook-size", type=int, default=512, help="kmeans, whisper-kmeans, ssl-kmeans, ctc-kmeans: number of codes")
    fit.add_argument("--utterance-cmn", action="store_true",
                     help="kmeans: subtract each utterance's mean log-mel before clustering")
    fit.add_argument("--prosody-weight", type=float, default=None,
                     help="kmeans: add level (dB), F0 (semitones) and voicing columns with this weight (default 0: off)")
    fit.add_argument("--spectral-size", type=int, default=64, help="kmeans-f0: log-mel clusters")
    fit.add_argument("--pitch-bins", type=int, default=4,
                     help="kmeans-f0: voiced pitch levels (codes = spectral size x (pitch bins + 1))")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--encoder", type=Path, default=None, help="ssl-kmeans: local HF speech encoder folder")
    fit.add_argument("--layer", type=int, default=None,
                     help="ssl-kmeans, whisper-kmeans: hidden-state index (defaults 6 and -1, the encoder output)")
    fit.add_argument("--whisper", choices=("base", "tiny.en"), default=None,
                     help="whisper-kmeans: packaged Whisper model (default base, multilingual)")
    fit.add_argument("--force", action="store_true", help="replace an existing tokenizer in DIR")
    p.add_argument("--no-progress", action="store_true")
    return p


def run(args) -> int:
    from convmem.corpus.manifest import read_manifest
    from convmem.errors import ConfigError
    from convmem.tokenizers import (
        CodeCache,
        build_tokenizer,
        default_cache_root,
        encode_dialogues,
        fit_on_dialogues,
        load_tokenizer,
    )

    progress = not args.no_progress
    if args.fit is None and args.sessions:
        raise ConfigError("--sessions only applies with --fit")
    if args.fit is not None:
        if not args.sessions:
            raise ConfigError("--fit needs --sessions: the training sessions to fit on (never the test ones)")
        if (args.tokenizer / "tokenizer.json").exists() and not args.force:
            raise ConfigError(f"{args.tokenizer}: a tokenizer is already saved there (use --force to replace it)")
    dialogues = read_manifest(args.manifest)
    cache = CodeCache(args.cache or default_cache_root())
    if args.fit is not None:
        if args.fit == "kmeans-f0":
            config = {"spectral_size": args.spectral_size, "pitch_bins": args.pitch_bins, "seed": args.seed}
        else:
            config = {"codebook_size": args.codebook_size, "seed": args.seed}
        kmeans_only = {"utterance_cmn": args.utterance_cmn or None, "prosody_weight": args.prosody_weight}
        given = {k: v for k, v in kmeans_only.items() if v is not None}
        if given and args.fit != "kmeans":
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ConfigError(f"{flags} only apply to --fit kmeans, not {args.fit}")
        config.update(given)
        if args.fit == "ssl-kmeans":
            if args.encoder is None:
                raise ConfigError("--fit ssl-kmeans needs --encoder DIR (a local HuBERT/WavLM/wav2vec2 folder)")
            config.update(encoder_dir=str(args.encoder), layer=6 if args.layer is None else args.layer)
        elif args.layer is not None or args.whisper is not None:
            if args.fit != "whisper-kmeans":
                raise ConfigError(f"--layer/--whisper only apply to ssl-kmeans/whisper-kmeans, not {args.fit}")
            config.update({k: v for k, v in (("layer", args.layer), ("model", args.whisper)) if v is not None})
        tokenizer = fit_on_dialogues(build_tokenizer(args.fit, **config), dialogues, args.sessions, progress, cache)
        tokenizer.save(args.tokenizer)
        print(f"fitted {args.fit} on sessions {', '.join(args.sessions)}; saved to {args.tokenizer}")
    else:
        tokenizer = load_tokenizer(args.tokenizer)
    codes = encode_dialogues(tokenizer, dialogues, cache, progress)
    frames = sum(c.size for c in codes.values())
    print(
        f"{tokenizer.kind}: {len(codes)} utterances in {len(dialogues)} dialogues, {frames} codes "
        f"({frames / tokenizer.frame_rate / 3600:.2f} h); cache {cache.hits} hits, {cache.misses} new "
        f"-> {cache.root / tokenizer.fingerprint[:16]}"
    )
    return 0
