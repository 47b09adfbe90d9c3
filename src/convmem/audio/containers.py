"""Is an audio file complete? Checks libsndfile does not make for WAV and Ogg.

libsndfile reads a truncated file without complaint: a WAV cut short is read up to the cut, and
an Ogg cut short reports the shorter length as the file's own (its length comes from the last
page it finds), so a recording damaged in a copy would be processed in part, silently.

- WAV: the data chunk's size must fit in the file. A size of 0xFFFFFFFF is the streaming
  convention (the writer did not know the length: a pipe, a live recorder), which libsndfile
  reads to the end of the file; it is not a truncation.
- Ogg (Vorbis, Opus, FLAC in Ogg): the last page must be whole (its CRC checks out, it ends at
  the end of the file) and carry the end-of-stream flag that every encoder sets on a finished
  stream.
"""

from __future__ import annotations

import struct
from pathlib import Path

from convmem.errors import AudioError

WAV_UNKNOWN_SIZE = 0xFFFFFFFF
_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # header + segment table + body, at most
_OGG_EOS = 0x04


def check_complete(path: Path, container: str) -> None:
    """Raise AudioError naming `path` when its WAV or Ogg container shows it was cut short.
    `container` is libsndfile's format name (`soundfile.info(path).format`)."""
    if container == "WAV":
        _check_wav(path)
    elif container == "OGG":
        _check_ogg(path)


def _check_wav(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
            return
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", fh.read(8))
            if chunk_id == b"data":
                # RF64 keeps the real size elsewhere (its ds64 chunk) and writes 0xFFFFFFFF here
                if head[:4] == b"RIFF" and chunk_size != WAV_UNKNOWN_SIZE and pos + 8 + chunk_size > size:
                    raise AudioError(
                        f"{path}: truncated audio (data chunk promises {chunk_size} bytes, "
                        f"file holds {size - pos - 8})"
                    )
                return
            if chunk_size == WAV_UNKNOWN_SIZE:  # a streamed chunk before the data: nothing to measure
                return
            pos += 8 + chunk_size + (chunk_size & 1)


def _check_ogg(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        start = max(0, size - 2 * _OGG_MAX_PAGE)
        fh.seek(start)
        tail = fh.read()
    # the last page with a valid CRC: a false "OggS" inside packet data fails its CRC
    pos = len(tail)
    while (pos := tail.rfind(b"OggS", 0, pos)) >= 0:
        page = _ogg_page(tail, pos)
        if page is None:
            continue
        end, flags = page
        if start + end != size:
            raise AudioError(f"{path}: truncated audio (the Ogg stream stops inside a page after "
                             f"{(start + end) / 1e6:.1f} MB; the file is cut short)")
        if not flags & _OGG_EOS:
            raise AudioError(f"{path}: truncated audio (the Ogg stream has no end-of-stream page; "
                             "the file is cut short)")
        return
    raise AudioError(f"{path}: truncated audio (no whole Ogg page at its end)")


def _ogg_page(data: bytes, pos: int) -> tuple[int, int] | None:
    """(end offset, header flags) of a whole, CRC-valid Ogg page at `pos` in `data`, else None."""
    if pos + 27 > len(data) or data[pos + 4] != 0:
        return None
    n_segments = data[pos + 26]
    body = sum(data[pos + 27: pos + 27 + n_segments])
    end = pos + 27 + n_segments + body
    if pos + 27 + n_segments > len(data) or end > len(data):
        return None
    page = bytearray(data[pos:end])
    crc = struct.unpack_from("<I", page, 22)[0]
    page[22:26] = b"\0\0\0\0"
    return (end, data[pos + 5]) if _ogg_crc(bytes(page)) == crc else None


def _ogg_crc(data: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, initial 0): not zlib's crc32."""
    crc = 0
    table = _crc_table()
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ b]
    return crc


_TABLE: list[int] = []


def _crc_table() -> list[int]:
    if not _TABLE:
        for i in range(256):
            r = i << 24
            for _ in range(8):
                r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
            _TABLE.append(r & 0xFFFFFFFF)
    return _TABLE
