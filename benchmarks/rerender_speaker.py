"""Which part of a speaker's habit does the SLM misread? Re-render his turns and ask again.

A diagnostic for generated corpora (it needs eSpeak NG and the corpus's generator_truth.json, as
`habit_misreads.py`). Every held-out turn of SPEAKER with a scored label is spoken again by eSpeak
with his habit plus the gold emotion's shift (no turn-to-turn noise), then
  - "own habit": as it is (the control: should misread as the corpus audio does);
  - "typical tempo": at the population's mean tempo instead of his (eSpeak's own rate change);
  - "stretched, pauses kept": his rendering time-stretched (WSOLA, pitch kept) to that tempo;
  - "stretched, pauses x f^2": the same with the silences inside the turn scaled by f^2 as well,
    where f is the tempo ratio (what `augment.tempo` + `augment.pause` can draw);
and the fold's trained SLM reads each turn alone (the `none` baseline). If "typical tempo" fixes the
misreads and only the last row reproduces it, the model reads the speaker's pauses, not his sounds.

    .venv/bin/python benchmarks/rerender_speaker.py runs/c2_seed0 S04_A

Prints a table and writes benchmarks/results/rerender_speaker.json.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import markdown_table, run_script, write_results  # noqa: E402
from habit_misreads import generator_truth, run_manifest  # noqa: E402

from convmem.errors import ManifestError  # noqa: E402


def render(text: str, habit: dict, shift: dict, rate: float):
    """eSpeak NG speaks `text` with `habit` + `shift` at `rate` wpm (before the shift); float64 at 16 kHz."""
    import numpy as np
    from scipy.signal import resample_poly

    from convmem.audio.io import SAMPLE_RATE
    from convmem.corpus.espeak import VoiceSettings, native_sample_rate, synthesize

    def clip(v):
        return int(round(min(100.0, max(0.0, v))))

    voice = VoiceSettings(voice=habit["variant"], rate=int(round(rate * shift["rate"])),
                          volume=int(round(min(200.0, habit["volume"] * shift["volume"]))),
                          pitch=clip(habit["pitch"] + shift["pitch"]), range=clip(habit["range"] + shift["range"]))
    frac = Fraction(SAMPLE_RATE, native_sample_rate())
    return resample_poly(synthesize(text, voice).astype(np.float64), frac.numerator, frac.denominator)


def rerender(run: Path, speaker: str, typical_rate: float) -> dict:
    """-> {"turns": n, "variants": {name: {"wa": %, "predicted": {label: count}}}}."""
    from convmem.audio.augment import Perturbation
    from convmem.bundle import load_bundle
    from convmem.corpus.manifest import read_manifest

    truth = generator_truth(run)
    if speaker not in truth["speakers"]:
        raise ManifestError(f"{speaker}: not a speaker of {run}'s corpus ({', '.join(sorted(truth['speakers']))})")
    dialogues = read_manifest(run_manifest(run))
    session = next(d.session for d in dialogues for u in d.utterances if u.speaker == speaker)
    model_dir = run / "folds" / f"loso_{session}" / "model"
    if not model_dir.is_dir():
        raise ManifestError(f"{model_dir}: missing; {speaker} must be held out by one of {run}'s folds")
    bundle = load_bundle(model_dir)
    habit, shifts = truth["speakers"][speaker]["habit"], truth["emotion_shift"]
    turns = [u for d in dialogues for u in d.utterances if u.speaker == speaker and u.emotion in bundle.labels]
    f = habit["rate"] / typical_rate  # > 1: his habit is faster than typical

    names = ("own habit", "typical tempo", "stretched, pauses kept", "stretched, pauses x f^2")
    waves = {n: [] for n in names}
    for u in turns:
        own = render(u.text, habit, shifts[u.emotion], habit["rate"])
        for n, w in zip(names, (own, render(u.text, habit, shifts[u.emotion], typical_rate),
                                Perturbation(Fraction(1), 0.0, tempo=1 / f).apply(own),
                                Perturbation(Fraction(1), 0.0, tempo=1 / f, pause=f * f).apply(own))):
            waves[n].append(w)
    # `none` reads every turn alone, so one variant's turns can pass as one conversation
    engine = bundle.engine("none")
    predicted = {}
    for n, ws in waves.items():
        live = bundle.encoder().conversation()  # one speaker's turns, for models that read prosody marks
        ids = [live.encode(w.astype("float32")).model_input(bundle.vocab).ids for w in ws]
        (result,) = engine.run([ids])
        predicted[n] = [bundle.labels[int(i)] for i in result.predictions]
    gold = [u.emotion for u in turns]
    return {"turns": len(turns), "habit_rate": habit["rate"], "typical_rate": typical_rate,
            "variants": {n: {"wa": round(100 * sum(p == g for p, g in zip(ps, gold)) / max(1, len(gold)), 1),
                             "predicted": dict(Counter(ps))} for n, ps in predicted.items()},
            "gold": dict(Counter(gold))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a finished `convmem run` folder on a generated corpus")
    ap.add_argument("speaker", help="a held-out speaker id, e.g. S04_A")
    ap.add_argument("--typical-rate", type=float, default=None,
                    help="wpm to re-render at (default: the preset's mean habitual rate)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/rerender_speaker.json"))
    args = ap.parse_args(argv)
    from convmem.corpus.synth_presets import HabitSpread

    rate = args.typical_rate or HabitSpread().rate_wpm_mean
    res = rerender(args.run, args.speaker, rate)
    print(f"{args.speaker}: habit {res['habit_rate']:.0f} wpm, typical {rate:.0f} wpm; gold {res['gold']}")
    print(markdown_table(["turns rendered as", "`none` WA", "predicted"],
                         [[n, v["wa"], ", ".join(f"{k} {c}" for k, c in sorted(v["predicted"].items()))]
                          for n, v in res["variants"].items()]))
    write_results(args.out, "rerender_speaker", 0, {"run": str(args.run), "speaker": args.speaker, **res})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_script(main)
