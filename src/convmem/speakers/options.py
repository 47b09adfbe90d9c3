"""The `--speakers auto|N|none` option, parsed once for predict, serve and the library."""

from __future__ import annotations

from convmem.errors import ConfigError


def parse_speakers(value) -> str | int:
    """"none" | "auto" | N (int 1..MAX_SPEAKERS) from a CLI string, an int or None (= "none")."""
    from convmem.speakers.cluster import MAX_SPEAKERS, check_n_speakers

    if value is None:
        return "none"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("none", "auto"):
            return text
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"--speakers must be auto, none or a number from 1 to {MAX_SPEAKERS}, "
                              f"got {value!r}") from None
    check_n_speakers(value)
    return int(value)
