"""Units and dtypes: exact byte prefixes and the storage width of each dtype.

Decimal prefixes (KB, GB) are powers of 10, binary ones (KiB, GiB) powers of 2.
Vendors print HBM sizes and bandwidths in decimal units; many papers print
KV-cache sizes in binary units and call them "GB". lclib computes in bytes and
converts only for display.
"""

from __future__ import annotations

KB, MB, GB, TB = 10**3, 10**6, 10**9, 10**12
KiB, MiB, GiB, TiB = 2**10, 2**20, 2**30, 2**40
TFLOPS = 1e12

DTYPE_BITS: dict[str, int] = {
    "fp32": 32,
    "bf16": 16,
    "fp16": 16,
    "fp8": 8,
    "int8": 8,
    "int4": 4,
}


def dtype_bits(dtype: str) -> int:
    """Storage width of `dtype` in bits; ValueError for unknown names."""
    try:
        return DTYPE_BITS[dtype]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown dtype {dtype!r}; pass one of {', '.join(DTYPE_BITS)}"
        ) from None


def bytes_for(n_elements: int, dtype: str) -> int:
    """Bytes needed to store `n_elements` values of `dtype` (rounded up to whole bytes)."""
    return -(-n_elements * dtype_bits(dtype) // 8)


_PREFIXES = {
    "B": 1, "KB": KB, "MB": MB, "GB": GB, "TB": TB,
    "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB,
}


def fmt_bytes(n_bytes: float, unit: str = "GB", digits: int = 1) -> str:
    """Format a byte count in an explicit unit, e.g. ``fmt_bytes(42.9e9) == '42.9 GB'``."""
    if unit not in _PREFIXES:
        raise ValueError(f"unknown unit {unit!r}; pass one of {', '.join(_PREFIXES)}")
    return f"{n_bytes / _PREFIXES[unit]:,.{digits}f} {unit}"


def fmt_tokens(n: int) -> str:
    """A token count the way context windows are named: '128K' = 131,072, '1M' = 2**20."""
    for unit, suffix in ((2**20, "M"), (2**10, "K")):
        if n >= unit and n % unit == 0:
            return f"{n // unit:,}{suffix}"
    return f"{n:,}"


def fmt_seconds(s: float) -> str:
    """Seconds with an SI prefix: '35.2 µs', '4.1 ms', '2.5 s', '1,234 s'."""
    if s >= 1000:
        return f"{s:,.0f} s"
    for factor, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if s >= factor:
            return f"{s / factor:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def positive_int(name: str, value: object) -> int:
    """Return `value` as an int if it is a positive whole number, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}; pass a value >= 1")
    return int(value)


def positive_float(name: str, value: object) -> float:
    """Return `value` as a float if it is a finite positive number, else raise ValueError."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not v > 0 or v == float("inf"):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return v
