"""report.md: the results object rendered as tables a reader can check against results.json.

Numbers are percentages with two decimals (as in the DPM paper) and their 95% bootstrap CI over
dialogues. A bucket with fewer than MIN_UTTERANCES utterances or MIN_DIALOGUES dialogues is marked
"(too few)" and a footnote says plainly that nothing can be concluded from it.
"""

from __future__ import annotations

from pathlib import Path

from convmem.eval.metrics import BUCKETS, HEADLINE_METRICS
from convmem.eval.plots import PLOT_FILES, run_description
from convmem.fileio import atomic_write_text

MIN_UTTERANCES = 30
MIN_DIALOGUES = 5
FAILURE_SEQUENCE_SHOWN = 24  # labels of a failure case shown before "..."

# The paper's Table 1 (SLLM-DPM / SLLM / Classifier). Its "SLLM" reads the whole dialogue at once
# (32k window); ours reads what fits (window) and, separately, only the current utterance (none).
TABLE1_ROWS = ("dpm", "window", "none", "classifier")
TABLE3_ROWS = ("window", "window_full")
BUCKET_NAMES = {"all": "all scored utterances", "long_context": "long context (history + utterance > n_limit)",
                "complete_dialogue": "complete dialogue (last scored utterance of each dialogue)"}


def method_name(m: str, meta: dict | None = None) -> str:
    """Display name of method `m`: the label the run named it by (results' meta "method_labels",
    which says what it read), else its label in the memory registry (memory/registry.py), the
    majority row's, or the raw name for a method neither knows."""
    from convmem.eval.majority import LABEL, METHOD
    from convmem.memory import registry

    named = (meta or {}).get("method_labels") or {}
    label = named.get(m) or (LABEL if m == METHOD else registry.label(m))
    return f"{label} (`{m}`)" if label else f"`{m}`"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.2f}"


def _pct_ci(x, ci) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.2f} [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else f"{100 * x:.2f} [no CI]"


def _p(p) -> str:
    return "—" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _too_few(blk: dict) -> bool:
    return blk["n"] < MIN_UTTERANCES or blk["n_dialogues"] < MIN_DIALOGUES


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _metric_rows(results: dict, methods, bucket: str) -> list[list[str]]:
    rows = []
    for m in methods:
        blk = results["methods"][m]["buckets"][bucket]
        ci = blk["ci"] or {}
        flag = " (too few)" if _too_few(blk) else ""
        rows.append([method_name(m, results["meta"])] + [_pct_ci(blk[k], ci.get(k)) for k in HEADLINE_METRICS]
                    + [f"{blk['n']}{flag}", str(blk["n_dialogues"])])
    return rows


METRIC_HEADER = ["WA % [95% CI]", "UA % [95% CI]", "WF1 % [95% CI]", "n utt.", "n dial."]


def _bucket_tables(results: dict, methods, buckets) -> str:
    parts = []
    for b in buckets:
        parts.append(f"*{BUCKET_NAMES[b]}*\n\n" + _table(["Method", *METRIC_HEADER], _metric_rows(results, methods, b)))
    return "\n\n".join(parts)


def render_report(results: dict, plots: dict[str, str] | None = None) -> str:
    """The report as markdown. `plots`: {name: relative path} from plots.write_plots."""
    meta, methods = results["meta"], list(results["methods"])
    plots = plots or {}
    out = [f"# Emotion recognition in long conversations: {meta['corpus']}", "",
           f"Run: {run_description(results)} | {results['n_rows']} prediction rows | "
           f"config `{meta.get('config', '?')}` | commit `{meta.get('commit', '?')}`", ""]
    if isinstance(meta.get("model"), dict):  # a trained model scored on this corpus (convmem eval-model)
        model = meta["model"]
        out += [f"Model: `{model.get('title', '?')}` at `{model.get('path', '?')}` (fingerprint "
                f"`{str(model.get('fingerprint', '?'))[:16]}`) | manifest `{meta.get('manifest', '?')}`", ""]
    if meta.get("caveat"):
        out += [f"> **Caveat:** {meta['caveat']}", ""]
    boot = results["settings"]["bootstrap"]
    out += [f"Every utterance is predicted with its full history (streaming). Folds are pooled. CIs: "
            f"{int(boot['level'] * 100)}% percentile bootstrap, {boot['n_resamples']} resamples of "
            f"**dialogues** (seed {boot['seed']}). UA averages recall over the classes present in gold. "
            f"\"(too few)\": fewer than {MIN_UTTERANCES} utterances or {MIN_DIALOGUES} dialogues; "
            f"nothing can be concluded from such a row.", ""]
    out += ["## Headline", "", _headline(results), ""]
    t1 = [m for m in TABLE1_ROWS if m in methods]
    if t1:
        out += ["## Table 1: memory vs no memory vs classifier", "",
                "Top: complete dialogue (the paper's starred rows); bottom: all lengths. The paper's "
                "\"SLLM\" reads the whole dialogue at once; here `window` reads the history that fits "
                "n_limit and `none` only the current utterance"
                + (" plus its speaker-relative prosody marks, which compare it with the same speaker's "
                   "earlier turns (so `none` reads speaker history)" if results["meta"].get("prosody_marks") else "")
                + ".", "",
                _bucket_tables(results, t1, ("complete_dialogue", "all")), ""]
    t3 = [m for m in TABLE3_ROWS if m in methods]
    if len(t3) == 2:
        out += ["## Table 3: truncated vs full context window", "",
                "`window` truncates the history to n_limit (the paper's 4k); `window_full` holds all of it "
                "(the paper's 32k).", "", _bucket_tables(results, t3, BUCKETS), ""]
    elif t3:
        out += ["## Table 3: truncated vs full context window", "",
                f"Not available: only `{t3[0]}` was run.", ""]
    extra = [m for m in methods if m not in TABLE1_ROWS and m not in TABLE3_ROWS]
    if extra:
        out += ["## Other memories and stepping strategies", "",
                _bucket_tables(results, extra, ("complete_dialogue", "all")), ""]
    out += ["## Long-context bucket (where memory matters)", "",
            _bucket_tables(results, methods, ("long_context",)), ""]
    memory_effect = _memory_effect_section(results)
    if memory_effect:
        out += [memory_effect, ""]
    out += [_paired_section(results), ""]
    if "baseline" in results:
        out += [_paired_section(results, "baseline"), ""]
    out += [_per_class_section(results), "", _per_fold_section(results), ""]
    cost = _cost_section(results)
    if cost:
        out += [cost, ""]
    out += [_failures_section(results), "", _plots_section(results, plots), ""]
    return "\n".join(out)


def _memory_effect_section(results: dict) -> str | None:
    """How much each memory moves `none`'s decisions (meta "changed_vs_none"), for MAL its gate and
    residual norm by utterance position (meta "mal_diagnostics"), for DPM how often each DPM method
    wrote (meta "dpm_writes"); None when the run has none of them."""
    meta = results["meta"]
    changed, mal = meta.get("changed_vs_none") or {}, meta.get("mal_diagnostics") or {}
    writes = meta.get("dpm_writes") or {}
    runs = meta.get("error_runs") or {}
    if not changed and not mal and not writes and not runs:
        return None
    out = ["## What the memories change", ""]
    if runs:
        out += ["Runs of consecutive errors along a dialogue (scored turns in order): a model that copies "
                "its own earlier mistakes makes long runs.", "",
                _table(["Method", "error runs", "mean length", "longest"],
                       [[method_name(m, meta), str(r["runs"]), f"{r['mean']:.2f}", str(r["longest"])]
                        for m, r in runs.items()]), ""]
    if changed:
        out += ["Share of the utterances scored by both whose predicted label differs from `none`'s "
                "(right or wrong): a memory that changes nothing cannot help.", "",
                _table(["Method", "changed vs `none` %", "n utt."],
                       [[method_name(m, meta), _pct(c["changed"]), str(c["n"])] for m, c in changed.items()]), ""]
    for m, rows in mal.items():
        out += [f"*{method_name(m, meta)}: gate and residual by utterance position (0 = first turn, read "
                "against the fresh memory); residual / hidden = mean ‖g·W_o r‖ / ‖h‖ over the audio tokens "
                "at the adapter's layer*", "",
                _table(["Positions", "reads", "gate mean", "residual / hidden"],
                       [[r["positions"], str(r["n"]), f"{r['gate']:.3f}", f"{r['residual_ratio']:.4g}"]
                        for r in rows]), ""]
    if writes:
        out += ["How often each DPM method wrote: utterances whose write stepped the temporary LoRA, of "
                "those it could write (every utterance after a dialogue's first). Sentence stepping "
                "writes all of them (100 %); a gated strategy at 100 % never closed its gate.", "",
                _table(["Method", "written / eligible", "write rate %", "optimizer steps", "utterances read"],
                       [[method_name(m, meta), f"{w['written']} / {w['eligible']}", _pct(w["rate"]),
                         str(w["steps"]), str(w["utterances"])] for m, w in writes.items()]), ""]
    return "\n".join(out).rstrip()


def _headline(results: dict) -> str:
    refs = [results[k] for k in ("paired", "baseline") if k in results]
    rows = []
    for m, block in results["methods"].items():
        b = block["buckets"]
        cells = [method_name(m, results["meta"])]
        for bucket in BUCKETS:
            blk = b[bucket]
            cells.append(f"{_pct_ci(blk['wa'], (blk['ci'] or {}).get('wa'))} (n={blk['n']}"
                         f"{', too few' if _too_few(blk) else ''})")
        for ref in refs:
            t = ref["tests"].get(m, {}).get("all")
            cells.append("reference" if m == ref["reference"] else (_delta_cell(t) if t else "—"))
        rows.append(cells)
    return _table(["Method", "WA all", "WA long context", "WA complete dialogue",
                   *(f"ΔWA vs `{ref['reference']}` (all)" for ref in refs)], rows)


def _delta_cell(t: dict) -> str:
    if t["delta_wa"] is None:
        return "no shared utterances"
    ci = (t["ci"] or {}).get("wa")
    return f"{100 * t['delta_wa']:+.2f} {_verdict(ci)} (p={_p((t['p_bootstrap'] or {}).get('wa'))})"


def _verdict(ci) -> str:
    if not ci:
        return "[no CI]"
    word = "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "no detectable difference"
    return f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}] {word}"


def _paired_section(results: dict, key: str = "paired") -> str:
    ref, tests = results[key]["reference"], results[key]["tests"]
    head = [f"## Paired tests against `{ref}`", ""]
    if not tests:
        return "\n".join(head + [f"Not run: reference method `{ref}` is absent or is the only method."])
    rows = []
    for m, per_bucket in tests.items():
        for b in BUCKETS:
            t = per_bucket[b]
            ci = t["ci"] or {}
            pb = t["p_bootstrap"] or {}
            few = " (too few)" if t["n"] < MIN_UTTERANCES or t["n_dialogues"] < MIN_DIALOGUES else ""
            rows.append([f"`{m}`", b, f"{t['n']}{few}", str(t["n_dialogues"]),
                         "—" if t["delta_wa"] is None else f"{100 * t['delta_wa']:+.2f} {_verdict(ci.get('wa'))}",
                         _p(pb.get("wa")),
                         "—" if t["delta_ua"] is None else f"{100 * t['delta_ua']:+.2f} {_verdict(ci.get('ua'))}",
                         _p(pb.get("ua")), f"{t['mcnemar_b']}/{t['mcnemar_c']}", _p(t["mcnemar_p"])])
    return "\n".join(head + [
        "Same utterances only (inner join on fold, dialogue, utterance). ΔWA/ΔUA in points with the 95% "
        "paired-bootstrap CI over dialogues and its two-sided p; McNemar: exact binomial test on "
        "discordant utterances (b = method right & reference wrong, c = the reverse). McNemar treats "
        "utterances as independent and is optimistic when errors cluster in dialogues; prefer the "
        "bootstrap p. No correction for multiple comparisons is applied.", "",
        _table(["Method", "Bucket", "n utt.", "n dial.", "ΔWA [CI]", "p boot", "ΔUA [CI]", "p boot",
                "McNemar b/c", "McNemar p"], rows)])


def _per_class_section(results: dict) -> str:
    labels = results["labels"]
    rows = []
    for m, block in results["methods"].items():
        pc = block["buckets"]["all"]["per_class"]
        rows.append([f"`{m}`"] + [f"{_pct(pc[lab]['precision'])} / {_pct(pc[lab]['recall'])} / "
                                  f"{_pct(pc[lab]['f1'])} ({pc[lab]['support']})" for lab in labels])
    return "\n".join(["## Per-class precision / recall / F1 % (support), all scored utterances", "",
                      "— : undefined (class never predicted, or absent from gold).", "",
                      _table(["Method", *labels], rows)])


def _per_fold_section(results: dict) -> str:
    folds = sorted({f for block in results["methods"].values() for f in block["per_fold"]})
    rows = []
    for m, block in results["methods"].items():
        cells = [f"`{m}`"]
        for f in folds:
            fb = block["per_fold"].get(f, {}).get("all")
            cells.append("—" if fb is None else f"{_pct(fb['wa'])} (n={fb['n']})")
        s = block["fold_summary"]["all"]["wa"]
        cells.append("—" if s["mean"] is None else
                     f"{_pct(s['mean'])} ± {_pct(s['sd'])}" if s["sd"] is not None else _pct(s["mean"]))
        rows.append(cells)
    return "\n".join(["## WA % per fold (all scored utterances)", "",
                      "Mean ± sd over folds (unweighted); the tables above pool utterances instead.", "",
                      _table(["Method", *folds, "mean ± sd"], rows)])


def _cost_section(results: dict) -> str | None:
    cost, timings = results.get("cost"), results["meta"].get("timings")
    parts = []
    for title, table in (("Cost", cost), ("Timings", timings)):
        if not isinstance(table, dict) or not table:
            continue
        keys = list(dict.fromkeys(k for v in table.values() if isinstance(v, dict) for k in v))
        if keys:
            rows = [[f"`{m}`"] + [_fmt_num(v.get(k)) for k in keys] for m, v in table.items() if isinstance(v, dict)]
            parts.append(_table(["Method", *keys], rows))
        else:
            parts.append(_table(["Method", title.lower()], [[f"`{m}`", _fmt_num(v)] for m, v in table.items()]))
    if not parts:
        return None
    return "\n".join(["## Cost", "", "As measured by the runner (see meta for machine and command).", "",
                      "\n\n".join(parts)])


def _fmt_num(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _seq(labels: list[str], other: list[str]) -> str:
    """Labels joined; those that differ from `other` in **bold**; long sequences cut."""
    shown = [f"**{a}**" if a != b else a for a, b in zip(labels, other)][:FAILURE_SEQUENCE_SHOWN]
    more = len(labels) - len(shown)
    return " ".join(shown) + (f" … (+{more})" if more > 0 else "")


def _failures_section(results: dict) -> str:
    s = results["settings"]
    head = ["## Failure cases", "",
            f"Worst {s['failures_per_method']} dialogues per method by accuracy, among dialogues with at "
            f"least {s['min_failure_utterances']} scored utterances; wrong predictions in bold.", ""]
    if not results["failures"]:
        return "\n".join(head + ["No dialogue has enough scored utterances."])
    rows = []
    for f in results["failures"]:
        tc = f["top_confusion"]
        rows.append([f"`{f['method']}`", f"`{f['dialogue']}` ({f['fold']})", f"{100 * f['accuracy']:.1f}% of {f['n']}",
                     "—" if tc is None else f"{tc['gold']}→{tc['predicted']} ×{tc['count']}",
                     _seq(f["gold"], f["gold"]), _seq(f["predicted"], f["gold"])])
    return "\n".join(head + [_table(["Method", "Dialogue (fold)", "Accuracy", "Most frequent error",
                                     "Gold", "Predicted"], rows)])


def _plots_section(results: dict, plots: dict[str, str]) -> str:
    lines = ["## Figures", ""]
    captions = {"accuracy_vs_history": "Accuracy vs history length (95% CI over dialogues, n per bin)",
                "per_class_f1": "Per-class F1", "confusion": "Confusion matrices",
                "write_loss_by_position": "Memory write loss by utterance position (mean ± sd)"}
    if not plots:
        return "\n".join(lines + ["No figures were drawn for this report."])
    for name in PLOT_FILES:
        if name in plots:
            lines += [f"![{captions[name]}]({plots[name]})", ""]
        elif name == "write_loss_by_position" and not results["curves"]["write_loss_by_position"]:
            lines += ["No method recorded a memory write loss, so there is no write-loss figure.", ""]
    return "\n".join(lines)


def write_report(results: dict, out_dir: str | Path, plots: dict[str, str] | None = None) -> Path:
    """Render and write `out_dir`/report.md atomically; returns its path."""
    path = Path(out_dir) / "report.md"
    atomic_write_text(path, render_report(results, plots))
    return path
