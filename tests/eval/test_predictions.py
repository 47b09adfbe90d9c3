import dataclasses
import json

import numpy as np
import pytest

from convmem.eval.predictions import (Prediction, PredictionsError, csv_columns, read_predictions_csv,
                                      table_from_predictions, write_predictions_csv)
from tests.eval.conftest import LABELS, make_predictions, make_table


def test_csv_round_trip_is_exact(tmp_path):
    t = make_table(n_dialogues=3)
    path = tmp_path / "p.csv"
    write_predictions_csv(path, t)
    back = read_predictions_csv(path)
    assert back.labels == LABELS
    for name in ("dialogue", "utterance", "fold", "method", "position", "gold", "predicted",
                 "history_tokens", "long_context", "last_scored", "session", "speaker"):
        assert (getattr(back, name) == getattr(t, name)).all(), name
    assert (back.probs == t.probs).all()  # repr floats: bit-exact
    assert np.array_equal(back.write_loss, t.write_loss, equal_nan=True)
    assert back.rows() == t.rows()
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]  # no temporary left behind


def test_header_follows_the_documented_order(tmp_path):
    path = tmp_path / "p.csv"
    write_predictions_csv(path, make_table(n_dialogues=1))
    assert path.read_text().splitlines()[0] == (
        "dialogue,utterance,fold,method,position,gold,predicted,prob_neu,prob_hap,prob_sad,prob_ang,"
        "history_tokens,long_context,last_scored,write_loss,session,speaker")
    assert csv_columns(("a", "b"))[7:9] == ["prob_a", "prob_b"]



def test_json_row_is_the_csv_schema_and_round_trips():
    # the one row dict of a fold's predictions_<method>.json (study writers and the majority row)
    preds = make_predictions(n_dialogues=1)
    row = preds[0].as_row()
    cols = csv_columns(LABELS)
    assert list(row) == [c for c in cols if not c.startswith("prob_")][:7] + ["probs"] + cols[7 + len(LABELS):]
    assert isinstance(row["probs"], list) and row["probs"] == list(preds[0].probs)
    assert [Prediction.from_row(json.loads(json.dumps(p.as_row()))) for p in preds] == preds

def _write_and_corrupt(tmp_path, line: int, column: str, value: str):
    path = tmp_path / "p.csv"
    write_predictions_csv(path, make_table(n_dialogues=2))
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("column,value,message", [
    ("gold", "joy", "field gold: 'joy' is not one of labels"),
    ("position", "x", "field position: 'x' is not an integer"),
    ("long_context", "maybe", "field long_context: 'maybe' is not true/false"),
    ("prob_neu", "7.0", "fields prob_*: not a probability vector"),
    ("history_tokens", "-3", "field history_tokens: negative"),
])
def test_bad_values_name_file_line_and_field(tmp_path, column, value, message):
    path = _write_and_corrupt(tmp_path, 5, column, value)
    with pytest.raises(PredictionsError) as err:
        read_predictions_csv(path)
    assert f"{path}:5" in str(err.value) and message in str(err.value)


def test_gold_must_agree_across_methods():
    rows = make_predictions(n_dialogues=2)
    i = next(k for k, r in enumerate(rows) if r.method == "dpm")
    other = next(lab for lab in LABELS if lab != rows[i].gold)
    rows[i] = dataclasses.replace(rows[i], gold=other)
    with pytest.raises(PredictionsError, match="field gold: differs from"):
        table_from_predictions(rows, LABELS)


def test_duplicates_and_last_scored_are_checked():
    rows = make_predictions(n_dialogues=2)
    with pytest.raises(PredictionsError, match="duplicate of"):
        table_from_predictions(rows + rows[:1], LABELS)
    k = next(i for i, r in enumerate(rows) if r.last_scored)
    broken = rows[:k] + [dataclasses.replace(rows[k], last_scored=False)] + rows[k + 1:]
    with pytest.raises(PredictionsError, match="0 rows with last_scored=true"):
        table_from_predictions(broken, LABELS)
    early = next(i for i, r in enumerate(rows) if r.position == 0)
    broken = rows[:early] + [dataclasses.replace(rows[early], last_scored=True)] + rows[early + 1:]
    with pytest.raises(PredictionsError, match="2 rows with last_scored=true"):
        table_from_predictions(broken, LABELS)


def test_header_mismatch_and_missing_file(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("dialogue,utterance\n")
    with pytest.raises(PredictionsError, match=r"p.csv:1: header does not match"):
        read_predictions_csv(path)
    with pytest.raises(PredictionsError, match="not found"):
        read_predictions_csv(tmp_path / "absent.csv")


def test_bad_table_writes_nothing(tmp_path):
    t = make_table(n_dialogues=2)
    t.probs[3] = [0.9, 0.9, 0.0, 0.0]
    path = tmp_path / "p.csv"
    with pytest.raises(PredictionsError, match="row 3, fields prob_"):
        write_predictions_csv(path, t)
    assert list(tmp_path.iterdir()) == []


def test_record_with_wrong_probability_count():
    p = Prediction("d", "u", "f", "m", 0, "neu", "neu", (1.0,), 0, False, True)
    with pytest.raises(PredictionsError, match="1 values for 4 labels"):
        table_from_predictions([p], LABELS)
