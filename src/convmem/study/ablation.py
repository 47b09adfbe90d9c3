"""An ablation: one study config run under several settings on the same folds, each setting's runs
pooled over further settings (e.g. two corpus seeds), and one table that says what each memory adds
under each setting (`convmem ablate CONFIG.yaml`).

A cell is (setting, pool member): the run config with the ablation's overrides, then the pool
member's, then the setting's, run as an ordinary resumable study in `<out>/cells/<setting>__<pool>`
(no final model). Cells of one pool member share the generated corpus and the code cache
(`<out>/shared/<pool>`), so every setting reads the same dialogues and the same codes. Per setting,
the pool's predictions are merged (dialogue, utterance and fold ids prefixed with the pool member,
so dialogues of different seeds stay apart in the dialogue bootstrap) and scored as one study in
`<out>/<setting>/` (results.json, predictions.csv, report.md). `<out>/ablation.md` and
`ablation.json` hold, per setting and method, WA/UA [95% CI], ΔWA against each reference method
(paired bootstrap over dialogues, exact McNemar), the long-context bucket, and every method's ΔWA
between settings on the same utterances.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convmem.config import Count, Seed
from convmem.errors import ConfigError

CELL_SEP = "__"


@dataclass
class AblationConfig:
    """What to run and compare.

    run: the study config every cell starts from (a path; relative paths are read from the
        ablation config's folder).
    overrides: `key=value` overrides of the run config, for every cell.
    compare: setting name -> its overrides (e.g. marks off / marks on; one setting is a study
        pooled over `pool`, with no between-settings table).
    pool: pool member name -> its overrides; a setting's figures pool its members' predictions
        (e.g. corpus seeds). One member without overrides by default.
    references: methods every other one is tested against, per setting.
    bootstrap, seed: dialogue-bootstrap resamples and their seed.
    """

    run: str
    compare: dict[str, list[str]]
    name: str = "ablation"
    out: str = "runs/{name}"
    overrides: list[str] = field(default_factory=list)
    pool: dict[str, list[str]] = field(default_factory=lambda: {"all": []})
    references: list[str] = field(default_factory=lambda: ["none", "window"])
    bootstrap: Count = 1000
    seed: Seed = 0

    def __post_init__(self) -> None:
        if not self.compare:
            raise ConfigError("compare: at least one setting is needed")
        if not self.pool:
            raise ConfigError("pool: at least one member is needed")
        for key, names in (("compare", self.compare), ("pool", self.pool)):
            for n in names:
                if not n or CELL_SEP in n or "/" in n or n.startswith("."):
                    raise ConfigError(f"{key}: name {n!r} must be non-empty, without '/' or '{CELL_SEP}'")

    @property
    def out_dir(self) -> Path:
        return Path(self.out.format(name=self.name))


@dataclass(frozen=True)
class Cell:
    """One study of the ablation: a compared setting on one pool member, with its run overrides."""

    setting: str
    member: str
    overrides: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.setting}{CELL_SEP}{self.member}"


def load_ablation(path: str | Path, overrides=()) -> tuple[AblationConfig, Path]:
    """The ablation config at `path` with `overrides`, and the run config's resolved path."""
    from convmem.config import load_config

    cfg = load_config(AblationConfig, path, overrides)
    run = Path(cfg.run)
    if not run.is_absolute():
        run = Path(path).parent / run
    if not run.is_file():
        raise ConfigError(f"{path}: run: {cfg.run} not found (read from {run})")
    return cfg, run


def cells(cfg: AblationConfig) -> list[Cell]:
    """Every (setting, pool member), settings outermost."""
    return [Cell(s, m, (*cfg.overrides, *cfg.pool[m], *cfg.compare[s], "final=false"))
            for s in cfg.compare for m in cfg.pool]


def cell_config(run_path: Path, cell: Cell):
    """The RunConfig of one cell (a ConfigError names the cell)."""
    from convmem.config import load_config
    from convmem.run_config import RunConfig

    try:
        return load_config(RunConfig, run_path, list(cell.overrides))
    except ConfigError as exc:
        raise ConfigError(f"ablation cell {cell.name}: {exc}") from None


def run_ablation(cfg: AblationConfig, run_path: Path, out: Path | None = None,
                 on_cell: Callable[[int, int, Cell], None] | None = None) -> Path:
    """Run (or resume) every cell, then score each setting and write ablation.md/json. Returns `out`."""
    from convmem.study.experiment import run_experiment

    out = Path(out or cfg.out_dir)
    todo = cells(cfg)
    configs = [cell_config(run_path, c) for c in todo]  # every cell's config checked before any runs
    _check_shared_corpus(out, todo, configs)
    for i, (cell, rc) in enumerate(zip(todo, configs)):
        if on_cell is not None:
            on_cell(i, len(todo), cell)
        shared = out / "shared" / cell.member
        run_experiment(rc, out / "cells" / cell.name, corpus_dir=shared / "corpus", cache_dir=shared / "cache")
    return summarise(cfg, out, {c.name: rc for c, rc in zip(todo, configs)})


def _check_shared_corpus(out: Path, todo: list[Cell], configs: list) -> None:
    """Cells of one pool member share its corpus: their corpus settings must agree with each other
    and with what the shared folder was made with (recorded there on first use)."""
    import json

    from convmem.config import to_dict
    from convmem.fileio import atomic_write_json

    seen: dict[str, dict] = {}
    for cell, rc in zip(todo, configs):
        corpus = to_dict(rc.corpus)
        if seen.setdefault(cell.member, corpus) != corpus:
            raise ConfigError(f"ablation cell {cell.name}: a setting changes the corpus; settings are compared "
                              "on the same corpus (put corpus overrides in `pool`)")
    for member, corpus in seen.items():
        record = out / "shared" / member / "corpus_settings.json"
        if record.exists() and json.loads(record.read_text()) != corpus:
            raise ConfigError(f"{record}: pool member {member!r} was run with other corpus settings; "
                              "use another out folder")
        record.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, corpus)


def pooled_table(cfg: AblationConfig, out: Path, setting: str):
    """A setting's predictions over its pool, ids prefixed "<member>/"."""
    from convmem.eval.predictions import read_predictions_csv, table_from_predictions

    rows, labels = [], None
    for member in cfg.pool:
        table = read_predictions_csv(out / "cells" / Cell(setting, member, ()).name / "predictions.csv")
        if labels is not None and tuple(table.labels) != tuple(labels):
            raise ConfigError(f"ablation: pool member {member!r} has labels {table.labels}, others {labels}")
        labels = table.labels
        rows += [dataclasses.replace(r, dialogue=f"{member}/{r.dialogue}", utterance=f"{member}/{r.utterance}",
                                     fold=f"{member}/{r.fold}") for r in table.rows()]
    return table_from_predictions(rows, labels, origin=f"{out}/{setting}")


def summarise(cfg: AblationConfig, out: Path, run_configs: dict) -> Path:
    """Score every setting over its pool into `out/<setting>/`, then `out/ablation.md` and `.json`."""
    import json

    from convmem.eval import write_evaluation
    from convmem.eval.results import ResultsConfig
    from convmem.eval.stats import BootstrapConfig
    from convmem.fileio import atomic_write_json, atomic_write_text
    from convmem.study.report import code_commit, described

    boot = BootstrapConfig(n_resamples=cfg.bootstrap, seed=cfg.seed)
    tables, settings = {}, {}
    for setting in cfg.compare:
        rc = run_configs[Cell(setting, next(iter(cfg.pool)), ()).name]
        table = tables[setting] = pooled_table(cfg, out, setting)
        meta = {"corpus": rc.corpus.title(), "caveat": rc.corpus.caveat, "folds": table.folds,
                "seeds": [rc.seed], "n_limit": rc.slm.n_limit, "config": f"{cfg.name}: {setting}",
                "methods": table.methods, "commit": code_commit(), "prosody_marks": bool(rc.slm.prosody_marks)}
        meta = described(meta, table.methods, table.rows())
        (out / setting).mkdir(parents=True, exist_ok=True)
        written = write_evaluation(table, meta, out / setting, ResultsConfig(bootstrap=boot))
        results = json.loads(written.results.read_text())
        settings[setting] = {"overrides": cfg.compare[setting], "prosody_marks": bool(rc.slm.prosody_marks),
                             "methods": _method_rows(table, results, cfg.references, boot)}
    summary = {"name": cfg.name, "pool": cfg.pool, "overrides": cfg.overrides, "references": cfg.references,
               "bootstrap": cfg.bootstrap, "settings": settings, "between_settings": _between(tables, boot)}
    atomic_write_json(out / "ablation.json", summary)
    atomic_write_text(out / "ablation.md", render(summary))
    return out / "ablation.md"


def _scores(block: dict) -> dict:
    """The summary's figures of one results.json bucket block."""
    ci = block["ci"]
    return {"n": block["n"], "wa": block["wa"], "ua": block["ua"], "wa_ci": ci and ci["wa"], "ua_ci": ci and ci["ua"]}


def _method_rows(table, results: dict, references: list[str], boot) -> dict:
    """Per method: its scores (all, long context) from the setting's `results` (results.json), and
    its paired test against each reference (the results' own when they used that reference)."""
    from convmem.eval.results import paired_tests

    rows = {m: {"all": _scores(r["buckets"]["all"]), "long_context": _scores(r["buckets"]["long_context"])}
            for m, r in results["methods"].items()}
    for ref in references:
        own = results["paired"]
        tests = own["tests"] if own["reference"] == ref else paired_tests(table, ref, boot)
        for m, t in tests.items():
            t = t["all"]
            rows[m][f"vs_{ref}"] = {"delta_wa": t["delta_wa"], "ci": t["ci"] and t["ci"]["wa"],
                                    "p_bootstrap": t["p_bootstrap"] and t["p_bootstrap"]["wa"],
                                    "mcnemar_p": t["mcnemar_p"]}
    return rows


def _between(tables: dict, boot) -> dict:
    """Each method's ΔWA of every setting against the first one, paired on the same utterances."""
    from convmem.eval.stats import paired_test

    first, *others = list(tables)
    base = tables[first]
    out: dict = {}
    for setting in others:
        t = tables[setting]
        for m in [m for m in t.methods if m in base.methods]:
            a, r = t.select(t.method == m), base.select(base.method == m)
            index = {k: i for i, k in enumerate(zip(r.fold, r.dialogue, r.utterance))}
            pairs = [(i, index[k]) for i, k in enumerate(zip(a.fold, a.dialogue, a.utterance)) if k in index]
            ia = np.array([p[0] for p in pairs], np.int64)
            ir = np.array([p[1] for p in pairs], np.int64)
            res = paired_test(a.dialogue[ia], a.gold[ia], a.predicted[ia], r.predicted[ir], len(t.labels), boot)
            out.setdefault(setting, {})[m] = {"against": first, "n": res["n"], "delta_wa": res["delta"]["wa"],
                                              "ci": res["ci"] and res["ci"]["wa"],
                                              "mcnemar_p": res["mcnemar"]["p"]}
    return out


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _ci(ci) -> str:
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _delta(d: dict | None) -> str:
    if not d or d.get("delta_wa") is None:
        return "—"
    sign = "+" if d["delta_wa"] >= 0 else "−"
    ci = d.get("ci")
    verdict = "" if not ci else (" ✓" if ci[0] > 0 else (" ✗" if ci[1] < 0 else ""))
    return f"{sign}{abs(100 * d['delta_wa']):.1f}{_ci(ci)}{verdict}"


def render(summary: dict) -> str:
    """ablation.md: one table per setting, then the between-settings table."""
    refs = summary["references"]
    pool = ", ".join(f"`{k}`" + (f" ({' '.join(v)})" if v else "") for k, v in summary["pool"].items())
    lines = [f"# Ablation: {summary['name']}", "",
             f"Pooled over: {pool}. WA/UA in %, 95% CIs resample dialogues ({summary['bootstrap']} "
             "resamples); Δ columns are paired on the same utterances (✓: CI above 0, ✗: below).", ""]
    for setting, s in summary["settings"].items():
        lines += [f"## {setting} ({' '.join(s['overrides'])})", "",
                  "| method | n | WA | UA | " + " | ".join(f"ΔWA vs `{r}`" for r in refs) + " | WA long context (n) |",
                  "|---" * (5 + len(refs)) + "|"]
        for m, row in s["methods"].items():
            a, lc = row["all"], row["long_context"]
            lines.append(f"| `{m}` | {a['n']} | {_pct(a['wa'])}{_ci(a['wa_ci'])} | {_pct(a['ua'])} | "
                         + " | ".join("reference" if m == r else _delta(row.get(f"vs_{r}")) for r in refs)
                         + f" | {_pct(lc['wa']) if lc['n'] else '—'} ({lc['n']}) |")
        lines.append("")
    for setting, methods in summary["between_settings"].items():
        first = next(iter(methods.values()))["against"] if methods else ""
        lines += [f"## {setting} against {first}, same method, same utterances", "",
                  "| method | n | ΔWA | McNemar p |", "|---|---|---|---|"]
        lines += [f"| `{m}` | {d['n']} | {_delta(d)} | {d['mcnemar_p']:.3g} |" for m, d in methods.items()]
        lines.append("")
    return "\n".join(lines)
