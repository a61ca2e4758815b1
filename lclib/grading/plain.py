"""Answers as plain data: what crosses between a sandboxed notebook and the judge.

`encode` runs inside the sandbox and turns a value into JSON-ready data; `decode` runs in the
judge and builds only exact builtin types, numpy arrays and scalars, torch tensors and lclib
dataclasses from it. Anything else, an int subclass included, decodes to an `Unexportable`
that fails every comparison, so a student's object never reaches the judge.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import math
import sys
from typing import Any

MAX_DEPTH, MAX_ITEMS = 32, 1_000_000
_NUMERIC = "biufc"  # numpy dtype kinds that travel: bool, int, uint, float, complex


class Unexportable:
    """A value that could not travel as plain data; using it raises TypeError."""

    def __init__(self, why: str) -> None:
        object.__setattr__(self, "why", why)

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise TypeError(f"the answer is not plain data ({self.why})")

    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __call__ = _refuse
    __len__ = __iter__ = __float__ = __int__ = __index__ = __getitem__ = __contains__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _refuse
    __rtruediv__ = __floordiv__ = __rfloordiv__ = __abs__ = __neg__ = __hash__ = _refuse

    def __getattr__(self, name: str) -> Any:
        return self._refuse()

    def __repr__(self) -> str:
        return f"<not plain data: {self.why}>"


# --- encode (inside the sandbox) ----------------------------------------------------------------

def encode(x: Any, top: bool = True) -> Any:
    """`x` as JSON-ready data; functions only at the top level (they are called by name)."""
    budget = [MAX_ITEMS]
    return _enc(x, 0, budget, top)


def _enc(x: Any, depth: int, budget: list[int], top: bool = False) -> Any:
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        return {"$bad": "too deep or too large"}
    t = type(x)
    if x is None or t in (bool, str, int):
        return x
    if t is float:
        return x if math.isfinite(x) else {"$float": repr(x)}
    if t in (list, tuple, set, frozenset):
        items = [_enc(v, depth + 1, budget) for v in (sorted(x, key=repr) if t in (set, frozenset)
                                                      else x)]
        return items if t is list else {f"${t.__name__}": items}
    if t is dict:
        pairs = [[_enc(k, depth + 1, budget), _enc(v, depth + 1, budget)] for k, v in x.items()]
        return {"$dict": pairs}
    np, torch = sys.modules.get("numpy"), sys.modules.get("torch")
    if np is not None and t is np.ndarray:
        return _array(x, budget)
    if np is not None and isinstance(x, np.generic) and x.dtype.kind in _NUMERIC:
        return {"$np": x.dtype.str, "data": _b64(np.asarray(x).tobytes())}
    if torch is not None and t is torch.Tensor:
        dtype = str(x.dtype).removeprefix("torch.")
        arr = x.detach().cpu().to(torch.float64 if x.is_floating_point() else x.dtype).numpy()
        return {"$tensor": dtype, "array": _array(arr, budget)}
    if dataclasses.is_dataclass(x) and not isinstance(x, type) and t.__module__.startswith("lclib"):
        fields = {f.name: _enc(getattr(x, f.name), depth + 1, budget)
                  for f in dataclasses.fields(x)}
        return {"$dataclass": f"{t.__module__}:{t.__qualname__}", "fields": fields}
    sympy = sys.modules.get("sympy")
    if sympy is not None and isinstance(x, sympy.Basic):
        try:
            return {"$sympy": _sym(x, depth, budget)}
        except (ValueError, RecursionError) as e:
            return {"$bad": f"a sympy expression with {e}"[:120]}
    if top and callable(x) and t.__name__ in ("function", "builtin_function_or_method"):
        return {"$function": getattr(x, "__name__", "?")}
    return {"$bad": f"a {t.__module__}.{t.__qualname__}"[:120]}


SYMPY_NODES = ("Add", "Mul", "Pow", "log", "exp", "Abs", "Max", "Min", "floor", "ceiling")


def _sym(x: Any, depth: int, budget: list[int]) -> Any:
    """A sympy expression as a tree of whitelisted nodes."""
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        raise ValueError("too deep")
    if x.is_Symbol:
        return ["Symbol", x.name, dict(getattr(x, "_assumptions_orig", {}))]
    if x.is_Integer:
        return ["Integer", int(x)]
    if x.is_Rational:
        return ["Rational", int(x.p), int(x.q)]
    if x.is_Float:
        return ["Float", str(x)]
    name = type(x).__name__
    if name not in SYMPY_NODES:
        raise ValueError(name)
    return [name, [_sym(a, depth + 1, budget) for a in x.args]]


def _unsym(node: Any, depth: int) -> Any:
    """The sympy expression of a `_sym` tree, built unevaluated from whitelisted nodes only."""
    import sympy

    kind = node[0]
    if depth > MAX_DEPTH:
        raise ValueError("too deep")
    if kind == "Symbol":
        flags = {str(k): bool(v) for k, v in node[2].items() if str(k).isidentifier()}
        return sympy.Symbol(str(node[1]), **flags)
    if kind in ("Integer", "Rational"):
        ints = [int(n) for n in node[1:]]
        if any(abs(n) > 10**100 for n in ints):
            raise ValueError("huge")
        return sympy.Integer(ints[0]) if kind == "Integer" else sympy.Rational(*ints)
    if kind == "Float":
        return sympy.Float(float(node[1]))
    if kind not in SYMPY_NODES:
        raise ValueError(kind)
    args = [_unsym(a, depth + 1) for a in _list(node[1])]
    if kind == "Pow" and args[1].is_Integer and abs(int(args[1])) > 10**4:
        raise ValueError("huge power")
    return getattr(sympy, kind)(*args, evaluate=False)


def _array(a: Any, budget: list[int]) -> Any:
    budget[0] -= a.size
    if a.dtype.kind not in _NUMERIC or budget[0] < 0:
        return {"$bad": f"an array of {a.dtype} with {a.size} items"}
    return {"$ndarray": a.dtype.str, "shape": list(a.shape), "data": _b64(a.tobytes())}


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


# --- decode (in the judge) ----------------------------------------------------------------------

def decode(d: Any) -> Any:
    """The value `d` describes, built from exact types only; bad data gives an Unexportable."""
    try:
        return _dec(d, 0)
    except (ValueError, TypeError, KeyError, AttributeError, ImportError, RecursionError) as e:
        return Unexportable(f"malformed ({type(e).__name__})")


def _dec(d: Any, depth: int) -> Any:
    if depth > MAX_DEPTH + 1:
        raise ValueError("too deep")
    t = type(d)
    if d is None or t in (bool, str, int):
        return d
    if t is float:
        if not math.isfinite(d):
            raise ValueError("not finite")
        return d
    if t is list:
        return [_dec(v, depth + 1) for v in d]
    if t is not dict or len(d) == 0:
        raise TypeError("unknown")
    tag = next(iter(d))
    body = d[tag]
    if tag == "$float":
        return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}[body])
    if tag in ("$tuple", "$set", "$frozenset"):
        kind = {"$tuple": tuple, "$set": set, "$frozenset": frozenset}[tag]
        return kind(_dec(v, depth + 1) for v in _list(body))
    if tag == "$dict":
        return {_dec(k, depth + 1): _dec(v, depth + 1) for k, v in _list(body)}
    if tag == "$ndarray":
        return _array_of(d)
    if tag == "$np":
        import numpy as np
        return np.frombuffer(base64.b64decode(d["data"]), dtype=_dtype(body))[0]
    if tag == "$tensor":
        import torch
        dtype = getattr(torch, str(body))
        if not isinstance(dtype, torch.dtype):
            raise TypeError("not a dtype")
        return torch.from_numpy(_array_of(d["array"]).copy()).to(dtype)
    if tag == "$dataclass":
        return _dataclass(str(body), d["fields"], depth)
    if tag == "$sympy":
        return _unsym(body, 0)
    if tag == "$function":
        return Function(str(body))
    if tag == "$bad":
        return Unexportable(str(body)[:120])
    raise TypeError("unknown tag")


def _list(x: Any) -> list:
    if type(x) is not list:
        raise TypeError("not a list")
    return x


def _dtype(body: str) -> Any:
    import numpy as np
    dtype = np.dtype(str(body))
    if dtype.kind not in _NUMERIC:
        raise TypeError("dtype")
    return dtype


def _array_of(d: dict) -> Any:
    import numpy as np
    shape = tuple(int(n) for n in _list(d["shape"]))
    return np.frombuffer(base64.b64decode(d["data"]), dtype=_dtype(d["$ndarray"])).reshape(shape)


def _dataclass(name: str, fields: Any, depth: int) -> Any:
    module, _, qualname = name.partition(":")
    if not (module == "lclib" or module.startswith("lclib.")) or "." in qualname:
        raise ImportError("only lclib dataclasses travel")
    cls = getattr(importlib.import_module(module), qualname)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or type(fields) is not dict:
        raise TypeError("not a dataclass")
    obj = object.__new__(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if set(fields) != names:
        raise TypeError("fields")
    for key, value in fields.items():
        object.__setattr__(obj, key, _dec(value, depth + 1))
    return obj


@dataclasses.dataclass(frozen=True)
class Function:
    """A function defined by the notebook: the judge calls it through the sandbox, by name."""

    name: str
