"""Output folders written all or nothing; `--force` replaces only what convmem wrote."""

import pytest

from convmem.errors import ConfigError
from convmem.staging import check_output_dir, staged_directory

OWNED = ("*.txt",)


def test_staged_directory_is_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with staged_directory(out, False, OWNED) as stage:
            (stage / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with staged_directory(out, False, OWNED) as stage:
        (stage / "a.txt").write_text("a")
    with pytest.raises(ConfigError, match="not empty"):
        check_output_dir(out, False, OWNED)
    with staged_directory(out, True, OWNED) as stage:
        (stage / "b.txt").write_text("b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(p.name for p in out.iterdir()) == ["b.txt"]
    (out / "notes.md").write_text("mine")
    with pytest.raises(ConfigError, match="also holds notes.md"):
        check_output_dir(out, True, OWNED)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "file", True, OWNED)
