"""Writes MELD CSVs in the exact release format and one tone wav per row (dia{D}_utt{U}.wav)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import soundfile as sf

from tests.conftest import make_tone

HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
          "Season", "Episode", "StartTime", "EndTime"]
# split -> rows (utterance, speaker, emotion, dialogue, utterance id, start, end)
ROWS = {
    "train": [
        ("also I was the point person on my company’s transition.", "Chandler", "neutral", 0, 0, "00:16:16,059", "00:16:21,731"),
        ("You must’ve had your hands full.", "The Interviewer", "neutral", 0, 1, "00:16:21,940", "00:16:23,442"),
        ("That I did. That I did.", "Chandler", "joy", 0, 2, "00:16:23,442", "00:16:26,389"),
        ("Oh my God!", "Monica", "surprise", 1, 0, "0:05:52,435", "0:05:53,897"),
        ("Get out, now.", "Joey", "anger", 1, 1, "0:05:53,897", "00:05:55,74"),
    ],
    "dev": [
        ("Why, why, why?", "Rachel", "sadness", 0, 0, "00:20:57,256", "00:21:01,927"),
        ("Ew.", "Ross", "disgust", 0, 1, "00:21:01,927", "00:21:02,500"),
    ],
    "test": [
        ("Hey!", "Chandler", "fear", 0, 0, "00:14:38,127", "00:14:40,629"),
        ("What?", "Phoebe", "neutral", 0, 1, "00:14:40,629", "00:14:41,000"),
    ],
}
CP1252_ROW = ("train", 1)  # this row's bytes are cp1252 (’ = 0x92), the rest UTF-8
DURATION = {0: 0.6, 1: 0.45, 2: 0.8}  # seconds, by Utterance_ID


def csv_line(fields: list) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(fields)
    return buf.getvalue()


def write_csv(path: Path, rows: list[tuple], cp1252_row: int | None = None) -> Path:
    out = csv_line(HEADER).encode("utf-8")
    for i, (text, spk, emo, d, u, start, end) in enumerate(rows):
        line = csv_line([i + 1, text, spk, emo, "neutral", d, u, 8, 21, start, end])
        out += line.encode("cp1252" if i == cp1252_row else "utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(out)
    return path


def write_audio(folder: Path, rows: list[tuple]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for text, spk, emo, d, u, *_ in rows:
        sf.write(folder / f"dia{d}_utt{u}.wav", make_tone(DURATION[u % 3], seed=d * 10 + u), 16000)


def write_fake_meld(root: Path) -> tuple[Path, Path]:
    """Return (csv_dir, audio_dir) with train/dev/test CSVs and audio folders train/ dev/ test/."""
    csv_dir, audio_dir = root / "csv", root / "audio"
    for split, rows in ROWS.items():
        write_csv(csv_dir / f"{split}_sent_emo.csv", rows, CP1252_ROW[1] if split == CP1252_ROW[0] else None)
        write_audio(audio_dir / split, rows)
    return csv_dir, audio_dir
