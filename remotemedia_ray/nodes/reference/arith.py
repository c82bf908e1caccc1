"""Element-wise combination, MultiplyNode and AddNode (Rust: ``kernels/arith.rs``).

``acc = f64(a0)``; for each further array ``a`` in sequence order
``acc = acc + f64(a)`` (``add``) or ``acc = acc * f64(a)`` (``multiply``);
then ``acc = acc + param`` or ``acc = acc * param``. Integer->f64 is
round-to-nearest (exact below 2^53; Rust ``as f64``). The result dtype is the
inputs' dtype: float64 as is; float32 one rounding (``as f32``), overflow
gives inf; integer dtypes ``round_saturate``. Floats are never clipped:
NaN/inf propagate as IEEE-754 says.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from remotemedia_ray.errors import AudioFormatError, ConfigError, MarshalingError
from remotemedia_ray.nodes.reference._samples import cast_back, finite_float

__all__ = ["CombineOp", "add", "combine", "combine_scalars", "multiply"]

CombineOp = Literal["add", "multiply"]


def _combinable_dtype(dtype: np.dtype[Any]) -> bool:
    """Whether ``combine`` accepts this dtype (float32/64 or any integer)."""
    if dtype.kind in "iu":
        return True
    return dtype.kind == "f" and dtype.itemsize in (4, 8)


def _check_op(op: str) -> None:
    if op not in ("add", "multiply"):
        raise ValueError(f"unknown op {op!r}; expected 'add' or 'multiply'")


def combine(arrays: Sequence[npt.NDArray[Any]], op: CombineOp, param: float) -> npt.NDArray[Any]:
    """Add or multiply arrays element-wise in f64, apply ``param``, cast back.

    ``acc = f64(a0)``, then ``acc + a`` (or ``acc * a``) for each further array
    in sequence order, then ``acc + param`` (or ``acc * param``), then back to
    the inputs' dtype: float64 as is, float32 by one rounding, integers rounded
    half-to-even and saturated (NaN -> 0). Floats are not clipped.

    Args:
        arrays: One or more arrays of the same shape (any shape) and dtype;
            float32, float64 or any signed/unsigned integer dtype.
        op: ``"add"`` or ``"multiply"``.
        param: A finite number applied last (the addend or the factor).

    Returns:
        A new C-contiguous array of the inputs' shape and dtype.

    Raises:
        MarshalingError: No arrays, a non-array, an unsupported dtype (bool,
            complex, object, string, float16, longdouble, ...), or a non-finite
            ``param``.
        AudioFormatError: The arrays' shapes or dtypes differ.
        ValueError: Unknown ``op``.
    """
    _check_op(op)
    value = finite_float(param, "param", ConfigError)
    if len(arrays) == 0:
        raise MarshalingError(f"{op} needs at least one input array")
    for a in arrays:
        if not isinstance(a, np.ndarray):
            raise MarshalingError(f"{op} input must be a numpy array, got {type(a).__name__}")
        if not _combinable_dtype(a.dtype):
            raise MarshalingError(
                f"{op} needs numeric samples (float32, float64 or integer), got dtype {a.dtype}"
            )
    shapes = [a.shape for a in arrays]
    if any(s != shapes[0] for s in shapes):
        raise AudioFormatError(f"{op} inputs must have the same shape, got {shapes}")
    dtypes = [a.dtype for a in arrays]
    if any(d != dtypes[0] for d in dtypes):
        raise AudioFormatError(
            f"{op} inputs must have the same dtype, got {[str(d) for d in dtypes]}"
        )
    acc = arrays[0].astype(np.float64, order="C")
    with np.errstate(all="ignore"):
        for a in arrays[1:]:
            if op == "add":
                np.add(acc, a, out=acc)
            else:
                np.multiply(acc, a, out=acc)
        if op == "add":
            acc += value
        else:
            acc *= value
        return cast_back(acc, dtypes[0])


def combine_scalars(values: Sequence[float], op: CombineOp, param: float) -> float:
    """The ``combine`` arithmetic on Python numbers, in the same order (f64).

    Args:
        values: One or more numbers, combined in sequence order.
        op: ``"add"`` or ``"multiply"``.
        param: A finite number applied last.

    Returns:
        ``((v0 op v1) op ...) op param`` as a float.

    Raises:
        MarshalingError: No values, a non-number, or a non-finite ``param``.
        ValueError: Unknown ``op``.
    """
    _check_op(op)
    value = finite_float(param, "param", ConfigError)
    if len(values) == 0:
        raise MarshalingError(f"{op} needs at least one value")
    floats: list[float] = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(
            v, (int, float, np.integer, np.floating)
        ):
            raise MarshalingError(f"{op} needs numbers, got {type(v).__name__} {v!r}")
        floats.append(float(v))
    acc = floats[0]
    for f in [*floats[1:], value]:
        acc = acc + f if op == "add" else acc * f
    return acc


def multiply(x: npt.NDArray[Any], factor: float) -> npt.NDArray[Any]:
    """``combine([x], "multiply", factor)``: scale every sample, rounding ints back."""
    return combine([x], "multiply", factor)


def add(x: npt.NDArray[Any], addend: float) -> npt.NDArray[Any]:
    """``combine([x], "add", addend)``: offset every sample, rounding ints back."""
    return combine([x], "add", addend)
