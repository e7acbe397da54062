"""Bytes per element of each dtype, size parsing (``128k``) and unit formatting.

Rates use decimal prefixes (TFLOP/s, GB/s: the vendors' convention); memory sizes
are shown in binary GiB where the unit says so.
"""

from __future__ import annotations

import re

from fractions import Fraction

from perfmodel.errors import PerfmodelError, UnknownNameError

#: Storage bytes per element. tf32 is stored as fp32; int4 packs two per byte.
DTYPE_BYTES = {
    "fp32": Fraction(4),
    "tf32": Fraction(4),
    "bf16": Fraction(2),
    "fp16": Fraction(2),
    "fp8": Fraction(1),
    "int8": Fraction(1),
    "int4": Fraction(1, 2),
}
DTYPES = tuple(DTYPE_BYTES)

#: binary gibibyte, the unit of the ``*_gib`` columns
GIB = 2**30

_TOKEN_SUFFIX = {"": 1, "k": 1024, "m": 1024**2}


def dtype_bytes(name: str) -> Fraction:
    """Bytes per element of ``name`` (one of :data:`DTYPES`)."""
    try:
        return DTYPE_BYTES[name.lower()]
    except KeyError:
        raise UnknownNameError("dtype", name, DTYPES) from None


#: bytes of one quantization scale (fp16), stored per group of weights
SCALE_BYTES = Fraction(2)
#: dtypes that weight-only quantization stores with per-group scales
GROUP_QUANTIZED = ("int8", "int4")
_WIDE = ("fp32", "tf32", "bf16", "fp16")


def weight_element_bytes(dtype: str, group_size: int | None = None) -> Fraction:
    """Bytes per weight element: the dtype plus, for group-quantized int4/int8, one fp16
    scale per ``group_size`` weights (GPTQ/AWQ ``g128``: 0.5 + 2/128 bytes for int4)."""
    element = dtype_bytes(dtype)
    if group_size is None or dtype.lower() not in GROUP_QUANTIZED:
        return element
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise PerfmodelError(f"weight-group-size: {group_size!r} is not a positive integer")
    return element + SCALE_BYTES / group_size


def embedding_dtype(weight_dtype: str, act_dtype: str) -> str:
    """What quantized engines keep the embedding table and LM head in: the weight dtype
    when it is 16/32-bit, else the activation dtype when that is (weight-only
    quantization: AWQ, GPTQ, TensorRT-LLM FP8 leave both unquantized), else bf16."""
    for dtype in (weight_dtype.lower(), act_dtype.lower()):
        if dtype in _WIDE:
            return dtype
    return "bf16"


def parse_count(text: str | int, what: str = "size", minimum: int = 1) -> int:
    """Parse a token/batch count: a plain integer or a ``k``/``m`` suffix (1k = 1024)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", str(text))
        if not m:
            raise PerfmodelError(f"{what}: {text!r} is not a count (use e.g. 4096, 32k or 1m; 1k = 1024)")
        number, suffix = m.groups()
        scaled = Fraction(number) * _TOKEN_SUFFIX[suffix.lower()]
        if scaled.denominator != 1:
            raise PerfmodelError(f"{what}: {text!r} is not a whole number of tokens")
        value = int(scaled)
    if value < minimum:
        raise PerfmodelError(f"{what}: {value} is below the minimum {minimum}")
    if value > 10**12:
        raise PerfmodelError(f"{what}: {value} is absurdly large (limit 10^12)")
    return value


_SI = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def si(value: float, unit: str = "", digits: int = 3) -> str:
    """Format with a decimal SI prefix: ``si(1.5e12, 'FLOP')`` -> ``'1.5 TFLOP'``."""
    value = float(value)
    for scale, prefix in _SI:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}".rstrip()
    return f"{value:.{digits}g} {unit}".rstrip()
