"""Tiny nEMO and TurEV-DB folders in the real layout: metadata.csv in the release's columns and one
short generated FLAC a row (a few hundredths of a second, so a whole corpus renders in a blink)."""

from __future__ import annotations

import csv
from pathlib import Path

import soundfile as sf

from tests.conftest import make_tone

NEMO_HEADER = ["file", "speaker", "gender", "age", "emotion", "raw_text", "duration_s"]
NEMO_EMOTIONS = ("anger", "fear", "happiness", "neutral", "sadness", "surprised")
NEMO_SPEAKERS = {"EB0": "female", "IC0": "female", "KS0": "male", "SM0": "male"}
NEMO_SENTENCES = ("Lubię czytać przed snem.", "Kupiłem nową szafę do sypialni.", "Woda w basenie jest ciepła.")

TUREV_HEADER = ["file", "speaker", "emotion", "emotion_code", "word", "duration_s"]
TUREV_CODES = {"angry": "kz", "calm": "sk", "happy": "mt", "sad": "hl"}
TUREV_WORDS = ("acik", "algi", "beste", "bugu", "cicek")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _tone(path: Path, i: int, seconds: float = 0.05) -> float:
    path.parent.mkdir(parents=True, exist_ok=True)
    seconds += 0.01 * (i % 4)
    sf.write(path, make_tone(seconds, freq=120 + 7 * i, seed=i), 16000)
    return seconds


def write_fake_nemo(root: Path, speakers: dict[str, str] = NEMO_SPEAKERS, per_emotion: int = 2,
                    skip: tuple[str, ...] = ()) -> Path:
    """`root/metadata.csv` + `root/samples/{speaker}_{emotion}_{n}.flac`; `skip` names stems left out."""
    rows, i = [], 0
    for spk, gender in speakers.items():
        for emo in NEMO_EMOTIONS:
            for n in range(1, per_emotion + 1):
                stem = f"{spk}_{emo}_{n}"
                if stem in skip:
                    continue
                i += 1
                dur = _tone(root / "samples" / f"{stem}.flac", i)
                rows.append([f"samples/{stem}.flac", spk, gender, 27, emo, NEMO_SENTENCES[i % 3], f"{dur:.3f}"])
    _write_csv(root / "metadata.csv", NEMO_HEADER, rows)
    return root


def write_fake_turev(root: Path, counts: dict[str, dict[str, int]] | None = None) -> Path:
    """`root/metadata.csv` + `root/{Angry,Calm,Happy,Sad}/{speaker}_{code}_{word}.flac`.

    counts: speaker -> emotion -> clips (default: four speakers, 2 of each emotion; 1157 has no calm)."""
    counts = counts or {"1157": {"angry": 3, "sad": 3}, "1234": dict.fromkeys(TUREV_CODES, 2),
                        "1358": dict.fromkeys(TUREV_CODES, 2), "1984": dict.fromkeys(TUREV_CODES, 2)}
    rows, i = [], 0
    for spk, per in counts.items():
        for emo, k in per.items():
            for word in TUREV_WORDS[:k]:
                i += 1
                rel = f"{emo.capitalize()}/{spk}_{TUREV_CODES[emo]}_{word}.flac"
                dur = _tone(root / rel, i)
                rows.append([rel, spk, emo, TUREV_CODES[emo], word, f"{dur:.3f}"])
    _write_csv(root / "metadata.csv", TUREV_HEADER, rows)
    return root


def edit_metadata(root: Path, line: int, **changes) -> dict:
    """Change columns of data row `line` (2 = the first row after the header); returns the old row."""
    path = root / "metadata.csv"
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
        header = list(rows[0].keys())
    old = dict(rows[line - 2])
    rows[line - 2].update(changes)
    _write_csv(path, header, [[r[c] for c in header] for r in rows])
    return old
