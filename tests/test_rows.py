"""Plain rows (perfmodel.rows) stand in for a DataFrame without pandas: each column's
kind is the dtype pandas infers from the same Python values, the CSV is what pandas'
``to_csv(index=False)`` writes, a float column sums as pandas sums it, and a query's
rows render exactly as its DataFrame does in every format. pandas and numpy are the
independent source here."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

from perfmodel import api
from perfmodel.export import FORMATS, compact, render
from perfmodel.options import Options
from perfmodel.presets import load_model
from perfmodel.rows import Rows, column_sum
from perfmodel.scenario import Scenario

KIND_OF_DTYPE = {"b": "bool", "i": "int", "u": "int", "f": "float"}

COLUMNS = {
    "ints": [1, 2, 3],
    "ints and a float": [1, 2.5, 3],
    "ints and None": [1, None, 3],
    "floats and NaN": [0.5, math.nan, 1e-9],
    "bools": [True, False, True],
    "bools and None": [True, None, False],
    "bools and ints": [True, 1, 0],
    "strings and None": ["a", None, "c"],
    "all None": [None, None, None],
    "all NaN": [math.nan, math.nan, math.nan],
    "beyond int64": [2**63, 1, 2],
    "beyond uint64": [2**64, 1, 2],
    "negative and beyond int64": [-1, 2**63, 0],
    "lists": [[1, 2], [3], None],
    "numbers and text": [1, "x", 2.5],
}


@pytest.mark.parametrize("name", COLUMNS)
def test_kinds_are_the_dtypes_pandas_infers(name):
    values = COLUMNS[name]
    rows = Rows([{"c": v} for v in values])
    frame = pd.DataFrame([{"c": v} for v in values])
    assert rows.kind("c") == KIND_OF_DTYPE.get(frame["c"].dtype.kind, "object")


def test_csv_is_what_pandas_writes():
    records = [{name: values[i] for name, values in COLUMNS.items()} for i in range(3)]
    records[1]["strings and None"] = 'say "hi", twice\nthen stop'  # quoting and a line break
    frame = pd.DataFrame(records)
    assert render(Rows(records), "csv") == frame.to_csv(index=False).rstrip("\n")
    assert render(Rows(records), "csv") == render(frame, "csv")


def test_column_sum_is_the_sum_pandas_takes():
    rng = random.Random(0)
    for n in [0, 1, 7, 8, 9, 15, 16, 17, 127, 128, 129, 255, 300, 1000]:
        values = [rng.random() * 10 ** rng.randint(-9, 3) for _ in range(n)]
        assert column_sum(values) == float(pd.Series(values, dtype=float).sum()) == float(np.sum(values)), n


def test_drop_assign_and_columns_keep_pandas_order():
    rows = Rows([{"a": 1, "b": 2.0, "c": "x"}, {"a": 3, "b": 4.0, "c": "y"}])
    frame = pd.DataFrame(rows.records())
    out, ref = rows.drop(columns=["b"]).assign(a=rows["c"], d=7), frame.drop(columns=["b"]).assign(a=frame["c"], d=7)
    assert out.columns == list(ref.columns)
    assert out.records() == ref.to_dict("records")
    with pytest.raises(ValueError):
        rows["e"] = [1, 2, 3]


def _queries():
    from perfmodel.hardware.catalog import get_accelerator

    h100 = get_accelerator("h100")
    llama, moe = load_model("llama-3-8b"), load_model("mixtral-8x7b")
    decode = Scenario(llama, Options(phase="decode"), batch=4, context=4096, accelerator=h100)
    return {
        "params": (api.params, (moe,), {}),
        "kv_cache": (api.kv_cache, (Scenario(load_model("bart-large"), Options(phase="prefill"), seq=1024, context=0, source=256),), {}),
        "roofline operator": (api.roofline_report, (decode,), {"by": "operator"}),
        "roofline layer": (api.roofline_report, (Scenario(moe, Options(phase="decode"), accelerator=h100),), {"by": "layer"}),
        "roofline total": (api.roofline_report, (decode,), {"by": "total"}),
        "balance total": (api.balance, (decode,), {}),
        "balance operator": (api.balance, (Scenario(moe, Options(phase="decode"), accelerator=h100),), {"by": "operator"}),
    }


@pytest.fixture(scope="module")
def queries():
    return {name: (query.rows(*args, **kw), query(*args, **kw)) for name, (query, args, kw) in _queries().items()}


@pytest.mark.parametrize("name", ["params", "kv_cache", "roofline operator", "roofline layer", "roofline total", "balance total", "balance operator"])
def test_rows_render_as_their_dataframe(queries, name):
    rows, frame = queries[name]
    assert isinstance(frame, pd.DataFrame) and rows.columns == list(frame.columns)
    for fmt in FORMATS:
        assert render(rows, fmt) == render(frame, fmt), fmt
    assert compact(rows) == compact(frame)
    assert compact(rows, width=60) == compact(frame, width=60)
