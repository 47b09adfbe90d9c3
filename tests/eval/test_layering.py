"""eval/ is scoring only: no module of it imports the study layer or training, directly or through
another convmem module, at module top or inside a function (every `import` statement counts)."""

from __future__ import annotations

import ast
from pathlib import Path

import convmem

ROOT = Path(convmem.__file__).resolve().parent
# what eval/ must never reach: the recipe, the loops, and the run config (it holds the training
# sections) and the command line above them
FORBIDDEN = ("convmem.study", "convmem.train", "convmem.run_config", "convmem.commands", "convmem.cli")


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """convmem modules named by any import statement of `path` (`from a import b` may name module a.b)."""
    package = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m in modules}


def test_eval_imports_neither_the_study_layer_nor_training():
    modules = _modules()
    start = sorted(m for m in modules if m == "convmem.eval" or m.startswith("convmem.eval."))
    assert "convmem.eval.report" in start
    reached_from: dict[str, str | None] = {m: None for m in start}
    todo = list(start)
    while todo:
        m = todo.pop()
        for dep in _imports(modules[m], modules):
            if dep not in reached_from:
                reached_from[dep] = m
                todo.append(dep)
    bad = []
    for m in sorted(reached_from):
        if m.startswith(FORBIDDEN):
            chain = [m]
            while reached_from[chain[-1]] is not None:
                chain.append(reached_from[chain[-1]])
            bad.append(" <- ".join(chain))
    assert bad == []
