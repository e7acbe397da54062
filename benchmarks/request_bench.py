"""How long a request takes to price (not a test: it prints timings, never fails).

    python3 benchmarks/request_bench.py

A Llama-3-8B request on an H100 (batch 8, 2k prompt, 2,048 output tokens, so 2,047
decode steps summed one by one): the first call compiles the prefill and decode step
functions (lambdify of the cost model, the roofline and the flat model), later calls with
other batches and lengths reuse them. Then ``validate e2e``'s 187 published rows, cold.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel import Options, Scenario, load_model
    from perfmodel.request import request

    sc = Scenario(load_model("llama-3-8b"), Options(phase="decode"), batch=8, accelerator=get_accelerator("h100"))
    start = time.perf_counter()
    request(sc, 2048, 2048)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    for batch in (1, 16, 64, 256):
        request(sc.but(batch=batch), 1024, 512)
    warm = (time.perf_counter() - start) / 4
    print(f"request, first call (compiles):   {cold:.2f} s")
    print(f"request, later calls (same model): {warm * 1e3:.1f} ms each")

    from perfmodel.hardware import e2e

    start = time.perf_counter()
    frame = e2e.scored(out_of_sample=True)
    print(f"validate e2e, {len(frame)} rows in and out of sample: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
