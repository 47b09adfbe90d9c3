"""Writes a tiny fake `IEMOCAP_full_release` in the exact real layout (2 sessions x 2 dialogs).

Quirks planted on purpose (the tests pin how the loader handles each):
- Ses01F_impro01: F003 starts before F002 ends (same-speaker overlap); M002 ends 0.3 s after the audio;
  blocks are written out of time order; one transcription line is not '<turn> [a-b]: text'.
- Ses01M_script01_1: F002 starts after the audio ends; no transcription file.
- Ses02F_impro02: no sentence wav for M001.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tests.conftest import make_tone

SR = 16000
# dialog -> (audio seconds, [(turn suffix, start, end, label)])
DIALOGS: dict[str, tuple[float, list[tuple[str, float, float, str]]]] = {
    "Ses01F_impro01": (20.0, [
        ("F000", 1.0, 3.0, "neu"), ("M000", 2.5, 5.0, "exc"), ("F001", 5.5, 8.0, "fru"),
        ("M001", 8.2, 10.0, "ang"), ("F002", 10.5, 12.0, "sad"), ("F003", 11.8, 14.0, "hap"),
        ("M002", 14.5, 20.3, "xxx"),
    ]),
    "Ses01M_script01_1": (15.0, [
        ("F000", 0.5, 2.0, "neu"), ("M000", 2.2, 4.0, "sad"), ("F001", 4.5, 6.0, "sur"),
        ("M001", 6.2, 9.0, "hap"), ("F002", 16.0, 17.0, "neu"),
    ]),
    "Ses02F_impro02": (12.0, [
        ("F000", 0.2, 1.5, "neu"), ("M000", 1.7, 3.0, "ang"), ("F001", 3.2, 5.0, "exc"),
        ("M001", 5.1, 7.0, "fea"), ("F002", 7.2, 9.0, "dis"), ("M002", 9.1, 11.5, "oth"),
    ]),
    "Ses02M_script02_2": (10.0, [
        ("F000", 0.3, 2.0, "sad"), ("M000", 2.1, 4.0, "neu"), ("F001", 4.2, 6.0, "ang"),
        ("M001", 6.1, 9.5, "exc"),
    ]),
}
NO_TRANSCRIPTION = {"Ses01M_script01_1"}
NO_SENTENCE_WAV = {"Ses02F_impro02_M001"}
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"


def eval_file(root: Path, dialog: str) -> Path:
    return root / f"Session{int(dialog[3:5])}" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"


def write_fake_iemocap(root: Path) -> Path:
    """Create `root/IEMOCAP_full_release` and return it."""
    rel = root / "IEMOCAP_full_release"
    for k, (dialog, (seconds, turns)) in enumerate(DIALOGS.items()):
        sess = rel / f"Session{int(dialog[3:5])}"
        wave = make_tone(seconds, SR, freq=180.0 + 20 * k, seed=k)
        _write(sess / "dialog" / "wav" / f"{dialog}.wav", np.stack([wave, 0.5 * wave], axis=1))  # stereo, like the release
        blocks, lines = [HEADER, ""], []
        order = turns[::-1] if k == 0 else turns  # out of time order in the first dialog
        for suffix, start, end, label in order:
            name = f"{dialog}_{suffix}"
            blocks += [
                f"[{start:.4f} - {end:.4f}]\t{name}\t{label}\t[2.5000, 3.0000, 2.5000]",
                "C-E1:\tNeutral;\t()",
                "C-E3:\tFrustration;\t(bored)",
                "A-E3:\tval 3; act 2; dom  2;\t()",
                "",
            ]
            lines.append(f"{name} [{start:08.4f}-{end:08.4f}]: words of {suffix.lower()}.")
            if name not in NO_SENTENCE_WAV and start < seconds:
                seg = wave[int(start * SR): int(min(end, seconds) * SR)]
                _write(sess / "sentences" / "wav" / dialog / f"{name}.wav", seg)
        eval_file(rel, dialog).parent.mkdir(parents=True, exist_ok=True)
        eval_file(rel, dialog).write_text("\n".join(blocks) + "\n")
        if dialog not in NO_TRANSCRIPTION:
            if k == 0:
                lines.append("M: [BREATHING]")
            tdir = sess / "dialog" / "transcriptions"
            tdir.mkdir(parents=True, exist_ok=True)
            (tdir / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    return rel


def _write(path: Path, wave: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, SR, subtype="PCM_16")
