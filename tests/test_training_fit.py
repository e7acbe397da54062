"""The sustained compute fraction of a training step (hardware/training_fit.py) against
hand derivations: a compute-bound time scales as 1/eta, so the least-absolute-deviation
fraction on ln(time) is the median of the rows' predicted/measured ratios (any value
between the middle two for an even count), and a study held out is predicted from the
other studies' rows of its die (pooled when none is left)."""

from __future__ import annotations

import pandas as pd
import pytest
from sympy import Integer

from perfmodel.hardware import training_fit as tf


def _row(study, part, ratio):
    """A row whose predicted time is ratio/eta times the measured 1 s."""
    return {"study": study, "accelerator": part, "time_at": lambda eta, q=ratio: q / eta, "measured_time": 1.0}


def test_golden_section_finds_a_parabola_minimum():
    assert tf.golden(lambda x: (x - 0.73) ** 2) == pytest.approx(0.73, abs=1e-4)


def test_fraction_is_the_median_of_the_ratios():
    # Σ |ln q_i − ln eta| is least at the median q_i: an outlier (0.2) does not move it
    rows = [(lambda eta, q=q: q / eta, 1.0) for q in (0.8, 0.85, 0.9, 0.2, 0.88)]
    assert tf.fit_fraction(rows) == pytest.approx(0.85, abs=1e-3)


def test_leave_one_source_out_uses_the_other_studies_of_the_die():
    frame = pd.DataFrame([_row("A et al. 2021 Table 1", "a100-80gb-sxm", 0.9), _row("A et al. 2021 Table 2", "a100-80gb-sxm", 0.95),
                          _row("B 2024", "a100-80gb-sxm", 0.8), _row("B 2024", "h200-sxm", 0.7), _row("C", "h100-sxm", 0.7),
                          _row("C", "h100-sxm", 0.6), _row("C", "h100-sxm", 0.75)])
    result = tf.fit(frame)
    # in sample: A100 the median of its three rows; H100's die pools H100 and H200 (0.6, 0.7, 0.7, 0.75)
    assert result["in_sample"]["a100-80gb-sxm"] == pytest.approx(0.9, abs=1e-3)
    assert result["in_sample"]["h100-sxm"] == pytest.approx(0.7, abs=1e-3)
    # study A (both its tables) held out: A100 from B's row alone
    assert tf.loso_fraction(result["leave_one_source_out"], "A et al. 2021 Table 2", "a100-80gb-sxm") == pytest.approx(0.8, abs=1e-3)
    # study C held out: H100's die keeps B's H200 row
    assert tf.loso_fraction(result["leave_one_source_out"], "C", "h100-sxm") == pytest.approx(0.7, abs=1e-3)
    # a part whose die has no rows left takes the pooled fraction of what is left
    loso_b = result["leave_one_source_out"]["B 2024"]
    assert loso_b["pooled"] == pytest.approx(0.75, abs=1e-3)  # the median of 0.9, 0.95, 0.7, 0.6, 0.75
    assert tf.loso_fraction(result["leave_one_source_out"], "B 2024", "b200") == loso_b["pooled"]


def test_a_compute_bound_kernel_takes_twice_as_long_at_half_the_rate():
    """eta scales R (and R_a, R_v, R_x): a 4096³ BF16 GEMM on H100 is compute-bound, so
    its time less the fixed times (the kernel's own and the gap before the next) doubles
    at eta = 0.5."""
    from perfmodel.cost import Fusion
    from perfmodel.hardware.catalog import get_accelerator
    from perfmodel.ops.base import Op
    from perfmodel.options import Options
    from perfmodel.scenario import Scenario
    from perfmodel.train import _seconds
    from tests.test_layout import LLAMA

    acc = get_accelerator("h100-sxm")
    n = Integer(4096)
    op = Op("gemm", matmul_flops=2 * n ** 3, weight_bytes=2 * n * n, act_read_bytes=2 * n * n, act_write_bytes=2 * n * n,
            gemm=(n, n, n))
    sc = Scenario(LLAMA, Options(phase="train"), seq=4096, accelerator=acc)
    seconds = _seconds([op], sc, Fusion())
    fixed = acc.cost.kernel_s + acc.cost.gap_s
    assert (seconds(0.5) - fixed) == pytest.approx(2 * (seconds(1.0) - fixed), rel=1e-12)
