"""The predictions table: one row per (fold, method, scored utterance), read and written as CSV.

This is the hand-off between the experiment runner and everything in `convmem.eval`: metrics,
bootstrap, results.json, plots and report are all computed from it, and `results.recompute_check`
re-derives every reported number from the CSV alone.

CSV columns, in this order (`csv_columns(labels)`)::

    dialogue, utterance, fold, method, position, gold, predicted, prob_<label> (one per label,
    in label order), history_tokens, long_context, last_scored, write_loss, session, speaker

- position: 0-based index of the utterance in its dialogue (all utterances, scored or not).
- history_tokens: tokens of the dialogue before this utterance (whatever the window held).
- long_context: history_tokens + own tokens > n_limit (the runner decides; it knows own tokens).
- last_scored: the last scored utterance of its dialogue ("complete dialogue" bucket).
- write_loss: memory write loss (DPM / MAL) or empty.
- booleans are written `true` / `false`; floats with `repr` so numbers round-trip exactly.

Key: (fold, method, dialogue, utterance) is unique. Within a fold and method every dialogue has
exactly one `last_scored` row and it has the largest position; gold, position, history_tokens
and long_context of an utterance are the same for every method (checked on read and write: a mismatch means a runner bug).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from convmem.errors import ConvmemError
from convmem.fileio import atomic_open

# Softmax outputs written with repr sum to 1 within float error; anything further off is not a
# probability vector (logits passed by mistake, or a label column missing).
PROB_SUM_TOLERANCE = 1e-4

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class PredictionsError(ConvmemError, ValueError):
    """A predictions table is malformed; the message names file, line and field."""


@dataclass(frozen=True)
class Prediction:
    """One scored utterance as predicted by one method in one fold.

    probs: softmax probabilities in the order of the run's `labels` tuple (E of them).
    write_loss: None (or NaN) where the method wrote no memory for this utterance.
    """

    dialogue: str
    utterance: str
    fold: str
    method: str
    position: int
    gold: str
    predicted: str
    probs: tuple[float, ...]
    history_tokens: int
    long_context: bool
    last_scored: bool
    write_loss: float | None = None
    session: str = ""
    speaker: str = ""

    def as_row(self) -> dict:
        """The record as a JSON row (one row of a fold's predictions_<method>.json): every field in
        declaration order, probs as a list. The one place that row is written; `from_row` reads it."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "probs": list(self.probs)}

    @classmethod
    def from_row(cls, row: dict) -> "Prediction":
        """The record of a JSON row written by `as_row`."""
        return cls(**{**row, "probs": tuple(row["probs"])})


def csv_columns(labels: Sequence[str]) -> list[str]:
    """Column names of the predictions CSV for `labels`."""
    return (["dialogue", "utterance", "fold", "method", "position", "gold", "predicted"]
            + [f"prob_{lab}" for lab in labels]
            + ["history_tokens", "long_context", "last_scored", "write_loss", "session", "speaker"])


@dataclass
class PredictionTable:
    """Columnar form of the predictions (N rows, E labels) used by the metrics.

    dialogue, utterance, fold, method, session, speaker: object[N] (str); position,
    history_tokens: int64[N]; gold, predicted: int64[N] (indices into `labels`); probs:
    float64[N, E]; long_context, last_scored: bool[N]; write_loss: float64[N] (NaN = none).
    """

    labels: tuple[str, ...]
    dialogue: np.ndarray
    utterance: np.ndarray
    fold: np.ndarray
    method: np.ndarray
    position: np.ndarray
    gold: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray
    history_tokens: np.ndarray
    long_context: np.ndarray
    last_scored: np.ndarray
    write_loss: np.ndarray
    session: np.ndarray
    speaker: np.ndarray
    origin: str = field(default="<predictions>", compare=False)

    def __len__(self) -> int:
        return int(self.gold.shape[0])

    @property
    def methods(self) -> list[str]:
        """Method names in order of first appearance (the runner's order)."""
        return list(dict.fromkeys(self.method.tolist()))

    @property
    def folds(self) -> list[str]:
        """Fold names, sorted."""
        return sorted(set(self.fold.tolist()))

    def select(self, mask: np.ndarray) -> "PredictionTable":
        """Rows where bool[N] `mask` is true, as a new table (arrays copied)."""
        cols = {name: getattr(self, name)[mask] for name in _ARRAY_FIELDS}
        return PredictionTable(labels=self.labels, origin=self.origin, **cols)

    def rows(self) -> list[Prediction]:
        """The table as Prediction records."""
        out = []
        for i in range(len(self)):
            wl = float(self.write_loss[i])
            out.append(Prediction(
                dialogue=self.dialogue[i], utterance=self.utterance[i], fold=self.fold[i],
                method=self.method[i], position=int(self.position[i]),
                gold=self.labels[self.gold[i]], predicted=self.labels[self.predicted[i]],
                probs=tuple(float(p) for p in self.probs[i]),
                history_tokens=int(self.history_tokens[i]), long_context=bool(self.long_context[i]),
                last_scored=bool(self.last_scored[i]), write_loss=None if math.isnan(wl) else wl,
                session=self.session[i], speaker=self.speaker[i]))
        return out


_ARRAY_FIELDS = ("dialogue", "utterance", "fold", "method", "position", "gold", "predicted", "probs",
                 "history_tokens", "long_context", "last_scored", "write_loss", "session", "speaker")


def table_from_predictions(predictions: Iterable[Prediction], labels: Sequence[str],
                           origin: str = "<predictions>",
                           row_names: Sequence[str] | None = None) -> PredictionTable:
    """Build and validate a PredictionTable from records.

    Errors name `row_names[i]` (e.g. "file.csv:12") or else "`origin`: row i".
    """
    labels = _check_labels(labels, origin)

    def where(i: int) -> str:
        return row_names[i] if row_names is not None else f"{origin}: row {i}"

    index = {lab: i for i, lab in enumerate(labels)}
    preds = list(predictions)
    n, e = len(preds), len(labels)
    gold = np.empty(n, np.int64)
    predicted = np.empty(n, np.int64)
    probs = np.empty((n, e), np.float64)
    for i, p in enumerate(preds):
        for name, value in (("gold", p.gold), ("predicted", p.predicted)):
            if value not in index:
                raise PredictionsError(f"{where(i)}, field {name}: {value!r} is not one of labels {labels}")
        if len(p.probs) != e:
            raise PredictionsError(f"{where(i)}, field probs: {len(p.probs)} values for {e} labels")
        gold[i], predicted[i], probs[i] = index[p.gold], index[p.predicted], p.probs
    table = PredictionTable(
        labels=labels,
        dialogue=np.array([str(p.dialogue) for p in preds], dtype=object),
        utterance=np.array([str(p.utterance) for p in preds], dtype=object),
        fold=np.array([str(p.fold) for p in preds], dtype=object),
        method=np.array([str(p.method) for p in preds], dtype=object),
        position=np.array([p.position for p in preds], dtype=np.int64),
        gold=gold, predicted=predicted, probs=probs,
        history_tokens=np.array([p.history_tokens for p in preds], dtype=np.int64),
        long_context=np.array([bool(p.long_context) for p in preds], dtype=bool),
        last_scored=np.array([bool(p.last_scored) for p in preds], dtype=bool),
        write_loss=np.array([math.nan if p.write_loss is None else float(p.write_loss) for p in preds],
                            dtype=np.float64),
        session=np.array([str(p.session) for p in preds], dtype=object),
        speaker=np.array([str(p.speaker) for p in preds], dtype=object),
        origin=origin)
    validate_table(table, where)
    return table


def validate_table(table: PredictionTable, where=None) -> None:
    """Check values and cross-row consistency; raise PredictionsError naming the row.

    `where(i) -> str` names row i (a CSV line, or a record index).
    """
    where = where or (lambda i: f"{table.origin}: row {i}")
    bad = np.flatnonzero(table.position < 0)
    if bad.size:
        raise PredictionsError(f"{where(bad[0])}, field position: negative ({table.position[bad[0]]})")
    bad = np.flatnonzero(table.history_tokens < 0)
    if bad.size:
        raise PredictionsError(f"{where(bad[0])}, field history_tokens: negative")
    finite = np.isfinite(table.probs).all(axis=1)
    in_range = finite & (table.probs >= 0).all(axis=1) & (table.probs <= 1).all(axis=1)
    sums_ok = np.abs(table.probs.sum(axis=1) - 1.0) <= PROB_SUM_TOLERANCE
    bad = np.flatnonzero(~(in_range & sums_ok))
    if bad.size:
        row = table.probs[bad[0]]
        raise PredictionsError(f"{where(bad[0])}, fields prob_*: not a probability vector "
                               f"(values {row.tolist()}, sum {row.sum():.6g})")
    for name in ("dialogue", "utterance", "fold", "method"):
        empty = np.flatnonzero(getattr(table, name) == "")
        if empty.size:
            raise PredictionsError(f"{where(empty[0])}, field {name}: empty")
    _check_consistency(table, where)


def _check_consistency(table: PredictionTable, where) -> None:
    seen: dict[tuple, int] = {}
    per_utt: dict[tuple, int] = {}
    last: dict[tuple, list[int]] = {}
    maxpos: dict[tuple, int] = {}
    for i in range(len(table)):
        f, m, d, u = table.fold[i], table.method[i], table.dialogue[i], table.utterance[i]
        key = (f, m, d, u)
        if key in seen:
            raise PredictionsError(f"{where(i)}: duplicate of {where(seen[key])} "
                                   f"(fold={f!r}, method={m!r}, dialogue={d!r}, utterance={u!r})")
        seen[key] = i
        j = per_utt.setdefault((f, d, u), i)
        for name in ("gold", "history_tokens", "position", "long_context"):
            if getattr(table, name)[i] != getattr(table, name)[j]:
                raise PredictionsError(f"{where(i)}, field {name}: differs from {where(j)} for the same "
                                       f"utterance {u!r} of dialogue {d!r} (method {m!r} vs "
                                       f"{table.method[j]!r})")
        dk = (f, m, d)
        maxpos[dk] = max(maxpos.get(dk, -1), int(table.position[i]))
        if table.last_scored[i]:
            last.setdefault(dk, []).append(i)
    for dk in maxpos:
        rows = last.get(dk, [])
        f, m, d = dk
        if len(rows) != 1:
            raise PredictionsError(f"{table.origin}: dialogue {d!r} (fold {f!r}, method {m!r}) has "
                                   f"{len(rows)} rows with last_scored=true; expected exactly 1")
        if table.position[rows[0]] != maxpos[dk]:
            raise PredictionsError(f"{where(rows[0])}, field last_scored: position "
                                   f"{table.position[rows[0]]} is not the last scored position "
                                   f"{maxpos[dk]} of dialogue {d!r}")


def _check_labels(labels: Sequence[str], origin: str) -> tuple[str, ...]:
    labels = tuple(str(lab) for lab in labels)
    if not labels or len(set(labels)) != len(labels) or any(not lab or "," in lab for lab in labels):
        raise PredictionsError(f"{origin}: labels must be distinct non-empty names without commas, "
                               f"got {labels}")
    return labels


def _fmt_float(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def write_predictions_csv(path: str | Path, table: PredictionTable) -> None:
    """Write `table` to `path` atomically (validated first; a bad table writes nothing)."""
    validate_table(table)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(csv_columns(table.labels))
        for i in range(len(table)):
            w.writerow([table.dialogue[i], table.utterance[i], table.fold[i], table.method[i],
                        int(table.position[i]), table.labels[table.gold[i]],
                        table.labels[table.predicted[i]]]
                       + [repr(float(p)) for p in table.probs[i]]
                       + [int(table.history_tokens[i]), "true" if table.long_context[i] else "false",
                          "true" if table.last_scored[i] else "false",
                          _fmt_float(table.write_loss[i]), table.session[i], table.speaker[i]])


def read_predictions_csv(path: str | Path, labels: Sequence[str] | None = None) -> PredictionTable:
    """Read and validate a predictions CSV.

    Args:
        path: the CSV written by `write_predictions_csv` (or by anything following the columns).
        labels: the run's labels; default: taken from the prob_<label> columns in their order.
    Raises:
        PredictionsError naming `path:line` and the field for every kind of bad input.
    """
    path = Path(path)
    if not path.is_file():
        raise PredictionsError(f"{path}: predictions file not found")
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise PredictionsError(f"{path}: empty file (no header)")
        file_labels = [h[len("prob_"):] for h in header if h.startswith("prob_")]
        if labels is None and not file_labels:
            raise PredictionsError(f"{path}:1: header does not match the predictions schema "
                                   f"(no prob_<label> columns; got {header})")
        labels = _check_labels(labels if labels is not None else file_labels, str(path))
        expected = csv_columns(labels)
        if header != expected:
            missing = [c for c in expected if c not in header]
            extra = [c for c in header if c not in expected]
            raise PredictionsError(f"{path}:1: header does not match the predictions schema "
                                   f"(missing {missing}, unexpected {extra}; order must be {expected})")
        lines: list[int] = []
        preds: list[Prediction] = []
        for row in reader:
            if not row:
                continue
            lines.append(reader.line_num)
            preds.append(_parse_row(row, labels, f"{path}:{reader.line_num}"))
    return table_from_predictions(preds, labels, origin=str(path),
                                  row_names=[f"{path}:{ln}" for ln in lines])


def _parse_row(row: list[str], labels: tuple[str, ...], where: str) -> Prediction:
    cols = csv_columns(labels)
    if len(row) != len(cols):
        raise PredictionsError(f"{where}: {len(row)} fields, expected {len(cols)}")
    rec = dict(zip(cols, row))

    def integer(name: str) -> int:
        try:
            return int(rec[name])
        except ValueError:
            raise PredictionsError(f"{where}, field {name}: {rec[name]!r} is not an integer") from None

    def number(name: str) -> float:
        try:
            return float(rec[name])
        except ValueError:
            raise PredictionsError(f"{where}, field {name}: {rec[name]!r} is not a number") from None

    def boolean(name: str) -> bool:
        v = rec[name].strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise PredictionsError(f"{where}, field {name}: {rec[name]!r} is not true/false")

    for name in ("gold", "predicted"):
        if rec[name] not in labels:
            raise PredictionsError(f"{where}, field {name}: {rec[name]!r} is not one of labels {labels}")
    return Prediction(
        dialogue=rec["dialogue"], utterance=rec["utterance"], fold=rec["fold"], method=rec["method"],
        position=integer("position"), gold=rec["gold"], predicted=rec["predicted"],
        probs=tuple(number(f"prob_{lab}") for lab in labels),
        history_tokens=integer("history_tokens"), long_context=boolean("long_context"),
        last_scored=boolean("last_scored"),
        write_loss=None if rec["write_loss"].strip() == "" else number("write_loss"),
        session=rec["session"], speaker=rec["speaker"])
