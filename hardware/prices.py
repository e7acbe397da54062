"""Default GPU-hour prices: on-demand **list prices** from one public pricing table
(``data/gpu-prices.csv``: provider, offer, date and source per row). A list price is
not what a committed or spot user pays; pass ``--gpu-hour-price`` for your own. GPUs
without a sourced price are left out (no price, no cost columns)."""

from __future__ import annotations

import functools
import io
from importlib import resources

import pandas as pd

FILE = "gpu-prices.csv"


@functools.cache
def table() -> pd.DataFrame:
    return pd.read_csv(io.StringIO((resources.files("perfmodel.hardware") / "data" / FILE).read_text(encoding="utf-8")))


def list_price(key: str) -> tuple[float | None, str]:
    """USD per GPU hour for the catalog ``key`` and where it comes from, or (None, '')."""
    rows = table()[table()["key"] == key]
    if rows.empty:
        return None, ""
    r = rows.iloc[0]
    return float(r["usd_per_gpu_hour"]), f"{r['kind']}: {r['provider']} {r['offer']}, as of {r['as_of']} ({r['source'].split(' ')[0]})"
