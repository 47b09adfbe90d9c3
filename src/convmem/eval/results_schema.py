"""The results.json schema check (docs/results_schema.md is the prose form; keep both in step).

Hand-written rather than JSON Schema: the schema is small, and the rules that matter most are
cross-field (supports sum to n, confusion rows equal supports, metrics null exactly when n = 0,
fold counts add up to the pooled count), which plain JSON Schema cannot say.
"""

from __future__ import annotations

from numbers import Real

from convmem.errors import ConvmemError
from convmem.eval.metrics import BUCKETS, HEADLINE_METRICS

SCHEMA_VERSION = "1.0"
REQUIRED_META = ("corpus", "folds", "seeds", "n_limit")
TOP_KEYS = ("schema_version", "meta", "labels", "buckets", "n_rows", "settings", "methods", "paired",
            "curves", "failures", "cost")
PAIRED_KEYS = ("n", "n_dialogues", "delta_wa", "delta_ua", "delta_wf1", "ci", "p_bootstrap",
               "mcnemar_b", "mcnemar_c", "mcnemar_p")
FAILURE_KEYS = ("method", "fold", "dialogue", "n", "accuracy", "gold", "predicted", "top_confusion")


class ResultsSchemaError(ConvmemError, ValueError):
    """A results object does not follow docs/results_schema.md; the message names the field path."""


class _Checker:
    def __init__(self):
        self.problems: list[str] = []

    def fail(self, path: str, msg: str) -> None:
        self.problems.append(f"{path}: {msg}")

    def is_dict(self, obj, path: str, keys=()) -> bool:
        if not isinstance(obj, dict):
            self.fail(path, f"expected an object, got {type(obj).__name__}")
            return False
        missing = [k for k in keys if k not in obj]
        if missing:
            self.fail(path, f"missing keys {missing}")
            return False
        return True

    def is_int(self, obj, path: str, lo: int = 0) -> bool:
        if not isinstance(obj, int) or isinstance(obj, bool) or obj < lo:
            self.fail(path, f"expected an integer >= {lo}, got {obj!r}")
            return False
        return True

    def fraction(self, obj, path: str, nullable: bool = True, lo: float = 0.0) -> None:
        if obj is None:
            if not nullable:
                self.fail(path, "must not be null")
        elif not isinstance(obj, Real) or isinstance(obj, bool) or not lo - 1e-12 <= obj <= 1 + 1e-12:
            self.fail(path, f"expected a number in [{lo}, 1] or null, got {obj!r}")

    def interval(self, obj, path: str, lo: float = 0.0) -> None:
        if obj is None:
            return
        if not (isinstance(obj, list) and len(obj) == 2 and all(isinstance(v, Real) for v in obj)
                and obj[0] <= obj[1] + 1e-12):
            self.fail(path, f"expected [lo, hi] with lo <= hi, got {obj!r}")
            return
        for i, v in enumerate(obj):
            self.fraction(v, f"{path}[{i}]", lo=lo)

    def metric_intervals(self, obj, path: str, lo: float = 0.0) -> None:
        if obj is None or not self.is_dict(obj, path, HEADLINE_METRICS):
            return
        for m in HEADLINE_METRICS:
            self.interval(obj[m], f"{path}.{m}", lo=lo)


def validate_results(obj) -> None:
    """Raise ResultsSchemaError listing every way `obj` departs from the results schema."""
    c = _Checker()
    if c.is_dict(obj, "results", TOP_KEYS):
        if obj["schema_version"] != SCHEMA_VERSION:
            c.fail("schema_version", f"expected {SCHEMA_VERSION!r}, got {obj['schema_version']!r}")
        if c.is_dict(obj["meta"], "meta", REQUIRED_META):
            n_limit = obj["meta"]["n_limit"]
            if n_limit is not None:
                c.is_int(n_limit, "meta.n_limit", lo=1)
            _check_memory_effect(c, obj["meta"])
        labels = obj["labels"]
        if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)
                and len(set(labels)) == len(labels)):
            c.fail("labels", f"expected distinct non-empty strings, got {labels!r}")
            labels = None
        if obj["buckets"] != list(BUCKETS):
            c.fail("buckets", f"expected {list(BUCKETS)}, got {obj['buckets']!r}")
        c.is_int(obj["n_rows"], "n_rows", lo=1)
        _check_settings(c, obj["settings"])
        methods = obj["methods"]
        if c.is_dict(methods, "methods") and labels is not None:
            if not methods:
                c.fail("methods", "no methods")
            for m, block in methods.items():
                _check_method(c, block, f"methods.{m}", labels)
        for key in ("paired", "baseline"):  # baseline: optional, present when `majority` was run
            if key in obj and c.is_dict(obj[key], key, ("reference", "tests")) and isinstance(methods, dict):
                _check_paired(c, obj[key], methods, key)
        if c.is_dict(obj["curves"], "curves", ("accuracy_vs_history", "write_loss_by_position")):
            _check_curves(c, obj["curves"])
        _check_failures(c, obj["failures"], labels)
        if obj["cost"] is not None:
            c.is_dict(obj["cost"], "cost")
    if c.problems:
        shown = "\n  ".join(c.problems[:20])
        more = f"\n  (+{len(c.problems) - 20} more)" if len(c.problems) > 20 else ""
        raise ResultsSchemaError(f"results do not follow the schema ({len(c.problems)} problems):\n  {shown}{more}")


def _check_memory_effect(c: _Checker, meta: dict) -> None:
    """Optional meta.changed_vs_none {method: {n, changed}}, meta.mal_diagnostics {method: [{positions,
    n, gate, residual_ratio}]} and meta.dpm_writes {method: {utterances, eligible, written, steps,
    rate}} (study/report.py)."""
    changed = meta.get("changed_vs_none")
    if changed is not None and c.is_dict(changed, "meta.changed_vs_none"):
        for m, v in changed.items():
            p = f"meta.changed_vs_none.{m}"
            if c.is_dict(v, p, ("n", "changed")):
                c.is_int(v["n"], f"{p}.n", lo=1)
                c.fraction(v["changed"], f"{p}.changed", nullable=False)
    runs = meta.get("error_runs")
    if runs is not None and c.is_dict(runs, "meta.error_runs"):
        for m, v in runs.items():
            p = f"meta.error_runs.{m}"
            if c.is_dict(v, p, ("runs", "mean", "longest")):
                c.is_int(v["runs"], f"{p}.runs", lo=0)
                c.is_int(v["longest"], f"{p}.longest", lo=0)
    mal = meta.get("mal_diagnostics")
    if mal is not None and c.is_dict(mal, "meta.mal_diagnostics"):
        for m, rows in mal.items():
            if not isinstance(rows, list):
                c.fail(f"meta.mal_diagnostics.{m}", f"expected a list of position buckets, got {rows!r}")
                continue
            for i, r in enumerate(rows):
                p = f"meta.mal_diagnostics.{m}[{i}]"
                if c.is_dict(r, p, ("positions", "n", "gate", "residual_ratio")):
                    c.is_int(r["n"], f"{p}.n", lo=1)
                    c.fraction(r["gate"], f"{p}.gate", nullable=False)
                    if not isinstance(r["residual_ratio"], Real) or not r["residual_ratio"] >= 0:
                        c.fail(f"{p}.residual_ratio", f"expected a number >= 0, got {r['residual_ratio']!r}")
    writes = meta.get("dpm_writes")
    if writes is not None and c.is_dict(writes, "meta.dpm_writes"):
        for m, w in writes.items():
            _check_dpm_writes(c, w, f"meta.dpm_writes.{m}")


def _check_dpm_writes(c: _Checker, w, p: str) -> None:
    """{utterances, eligible, written, steps, rate} (memory/dpm_writes.py): counts that nest
    (written <= eligible <= utterances, steps >= written) and a rate that is written / eligible."""
    keys = ("utterances", "eligible", "written", "steps", "rate")
    if not c.is_dict(w, p, keys) or not all(c.is_int(w[k], f"{p}.{k}") for k in keys[:4]):
        return
    if not w["written"] <= w["eligible"] <= w["utterances"]:
        c.fail(p, f"expected written <= eligible <= utterances, got {w['written']}, {w['eligible']}, "
                  f"{w['utterances']}")
    if w["steps"] < w["written"]:
        c.fail(f"{p}.steps", f"{w['steps']} optimizer steps for {w['written']} writes (each takes >= 1)")
    expected = w["written"] / w["eligible"] if w["eligible"] else None
    if (w["rate"] is None) != (expected is None) or (
            expected is not None and not (isinstance(w["rate"], Real) and abs(w["rate"] - expected) <= 1e-9)):
        c.fail(f"{p}.rate", f"expected written / eligible = {expected!r}, got {w['rate']!r}")


def _check_settings(c: _Checker, s) -> None:
    keys = ("bootstrap", "reference", "failures_per_method", "min_failure_utterances")
    if not c.is_dict(s, "settings", keys):
        return
    if c.is_dict(s["bootstrap"], "settings.bootstrap", ("unit", "n_resamples", "seed", "level")):
        c.is_int(s["bootstrap"]["n_resamples"], "settings.bootstrap.n_resamples", lo=1)
        c.fraction(s["bootstrap"]["level"], "settings.bootstrap.level", nullable=False)
    if not isinstance(s["reference"], str):
        c.fail("settings.reference", f"expected a method name, got {s['reference']!r}")
    c.is_int(s["failures_per_method"], "settings.failures_per_method")
    c.is_int(s["min_failure_utterances"], "settings.min_failure_utterances")


def _check_point(c: _Checker, blk, path: str) -> bool:
    if not c.is_dict(blk, path, ("n", "n_dialogues", *HEADLINE_METRICS)):
        return False
    if c.is_int(blk["n"], f"{path}.n") and c.is_int(blk["n_dialogues"], f"{path}.n_dialogues"):
        if blk["n_dialogues"] > blk["n"] or (blk["n"] > 0) != (blk["n_dialogues"] > 0):
            c.fail(path, f"n_dialogues {blk['n_dialogues']} inconsistent with n {blk['n']}")
    for m in HEADLINE_METRICS:
        c.fraction(blk[m], f"{path}.{m}")
        if (blk[m] is None) != (blk["n"] == 0):
            c.fail(f"{path}.{m}", "must be null exactly when n = 0")
    return True


def _check_bucket(c: _Checker, blk, path: str, labels: list[str]) -> None:
    if not _check_point(c, blk, path) or not c.is_dict(blk, path, ("ci", "per_class", "confusion")):
        return
    n = blk["n"]
    c.metric_intervals(blk["ci"], f"{path}.ci")
    per_class, conf = blk["per_class"], blk["confusion"]
    supports = []
    if c.is_dict(per_class, f"{path}.per_class", labels):
        if set(per_class) != set(labels):
            c.fail(f"{path}.per_class", f"keys {sorted(per_class)} != labels")
        for lab in labels:
            pc, p = per_class[lab], f"{path}.per_class.{lab}"
            if c.is_dict(pc, p, ("precision", "recall", "f1", "support")):
                for k in ("precision", "recall", "f1"):
                    c.fraction(pc[k], f"{p}.{k}")
                if c.is_int(pc["support"], f"{p}.support"):
                    supports.append(pc["support"])
                    if (pc["recall"] is None) != (pc["support"] == 0):
                        c.fail(f"{p}.recall", "must be null exactly when support = 0")
        if len(supports) == len(labels) and sum(supports) != n:
            c.fail(f"{path}.per_class", f"supports sum to {sum(supports)}, n is {n}")
    e = len(labels)
    if not (isinstance(conf, list) and len(conf) == e and all(
            isinstance(r, list) and len(r) == e and all(isinstance(v, int) and v >= 0 for v in r) for r in conf)):
        c.fail(f"{path}.confusion", f"expected a {e}x{e} matrix of counts")
        return
    if sum(map(sum, conf)) != n:
        c.fail(f"{path}.confusion", f"counts sum to {sum(map(sum, conf))}, n is {n}")
    if len(supports) == e and [sum(r) for r in conf] != supports:
        c.fail(f"{path}.confusion", "row sums differ from per_class supports")


def _check_method(c: _Checker, block, path: str, labels: list[str]) -> None:
    if not c.is_dict(block, path, ("buckets", "per_fold", "fold_summary")):
        return
    if c.is_dict(block["buckets"], f"{path}.buckets", BUCKETS):
        for b in BUCKETS:
            _check_bucket(c, block["buckets"][b], f"{path}.buckets.{b}", labels)
    if c.is_dict(block["per_fold"], f"{path}.per_fold"):
        for b in BUCKETS:
            total = 0
            for fold, fb in block["per_fold"].items():
                if c.is_dict(fb, f"{path}.per_fold.{fold}", BUCKETS) and _check_point(
                        c, fb[b], f"{path}.per_fold.{fold}.{b}") and isinstance(fb[b]["n"], int):
                    total += fb[b]["n"]
            pooled = block["buckets"].get(b, {}) if isinstance(block["buckets"], dict) else {}
            if isinstance(pooled, dict) and isinstance(pooled.get("n"), int) and total != pooled["n"]:
                c.fail(f"{path}.per_fold", f"bucket {b}: fold counts sum to {total}, pooled n is {pooled['n']}")
    if c.is_dict(block["fold_summary"], f"{path}.fold_summary", BUCKETS):
        for b in BUCKETS:
            if c.is_dict(block["fold_summary"][b], f"{path}.fold_summary.{b}", HEADLINE_METRICS):
                for m in HEADLINE_METRICS:
                    s, p = block["fold_summary"][b][m], f"{path}.fold_summary.{b}.{m}"
                    if c.is_dict(s, p, ("mean", "sd", "n_folds")):
                        c.fraction(s["mean"], f"{p}.mean")
                        c.is_int(s["n_folds"], f"{p}.n_folds")


def _check_paired(c: _Checker, paired: dict, methods: dict, key: str = "paired") -> None:
    ref, tests = paired["reference"], paired["tests"]
    if not c.is_dict(tests, f"{key}.tests"):
        return
    if tests and ref not in methods:
        c.fail(f"{key}.reference", f"{ref!r} is not among the methods")
    for m, per_bucket in tests.items():
        if m not in methods or m == ref:
            c.fail(f"{key}.tests.{m}", "not a method other than the reference")
        if not c.is_dict(per_bucket, f"{key}.tests.{m}", BUCKETS):
            continue
        for b in BUCKETS:
            t, p = per_bucket[b], f"{key}.tests.{m}.{b}"
            if not c.is_dict(t, p, PAIRED_KEYS):
                continue
            c.is_int(t["n"], f"{p}.n")
            c.is_int(t["n_dialogues"], f"{p}.n_dialogues")
            for k in ("delta_wa", "delta_ua", "delta_wf1"):
                c.fraction(t[k], f"{p}.{k}", lo=-1.0)
            c.metric_intervals(t["ci"], f"{p}.ci", lo=-1.0)
            if t["p_bootstrap"] is not None and c.is_dict(t["p_bootstrap"], f"{p}.p_bootstrap", HEADLINE_METRICS):
                for k in HEADLINE_METRICS:
                    c.fraction(t["p_bootstrap"][k], f"{p}.p_bootstrap.{k}", nullable=False)
            if c.is_int(t["mcnemar_b"], f"{p}.mcnemar_b") and c.is_int(t["mcnemar_c"], f"{p}.mcnemar_c") \
                    and isinstance(t["n"], int) and t["mcnemar_b"] + t["mcnemar_c"] > t["n"]:
                c.fail(p, "discordant pairs exceed n")
            c.fraction(t["mcnemar_p"], f"{p}.mcnemar_p", nullable=False)


def _check_curves(c: _Checker, curves: dict) -> None:
    acc = curves["accuracy_vs_history"]
    if c.is_dict(acc, "curves.accuracy_vs_history", ("bin_edges", "methods")):
        edges = acc["bin_edges"]
        if not (isinstance(edges, list) and len(edges) >= 2 and all(isinstance(e, int) for e in edges)
                and all(a < b for a, b in zip(edges, edges[1:]))):
            c.fail("curves.accuracy_vs_history.bin_edges", f"expected increasing integers, got {edges!r}")
        elif c.is_dict(acc["methods"], "curves.accuracy_vs_history.methods"):
            for m, row in acc["methods"].items():
                p = f"curves.accuracy_vs_history.methods.{m}"
                if c.is_dict(row, p, ("n", "correct", "wa", "ci")) and any(
                        not isinstance(row[k], list) or len(row[k]) != len(edges) - 1 for k in row):
                    c.fail(p, f"every list must have {len(edges) - 1} entries (one per bin)")
    wl = curves["write_loss_by_position"]
    if c.is_dict(wl, "curves.write_loss_by_position"):
        for m, row in wl.items():
            p = f"curves.write_loss_by_position.{m}"
            if c.is_dict(row, p, ("position", "n", "mean", "sd")) and len({len(v) for v in row.values()}) != 1:
                c.fail(p, "position, n, mean and sd must have equal lengths")


def _check_failures(c: _Checker, failures, labels) -> None:
    if not isinstance(failures, list):
        c.fail("failures", "expected a list")
        return
    for i, f in enumerate(failures):
        p = f"failures[{i}]"
        if not c.is_dict(f, p, FAILURE_KEYS):
            continue
        c.fraction(f["accuracy"], f"{p}.accuracy", nullable=False)
        if c.is_int(f["n"], f"{p}.n", lo=1) and not (len(f["gold"]) == len(f["predicted"]) == f["n"]):
            c.fail(p, "gold and predicted must list n labels each")
        if labels is not None and any(x not in labels for x in [*f["gold"], *f["predicted"]]):
            c.fail(p, "unknown label in gold/predicted")
