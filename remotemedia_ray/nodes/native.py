"""Access to the native extension ``remotemedia_ray._native``.

This is the only module that imports the extension; the rest of the package
asks it whether native code is available and gets the module from
:func:`native_module`. Importing this module never fails: when the extension
is missing (a source checkout that was not built, an unsupported platform),
:func:`native_available` is false and the numpy implementations are used.

A debug build of the extension is correct but slow, so importing this module
warns once (``RuntimeWarning``) when the extension was built without
``--release``; never benchmark such a build.
"""

from __future__ import annotations

import warnings
from types import ModuleType

from remotemedia_ray.errors import NodeExecutionError

__all__ = [
    "native_available",
    "native_build_profile",
    "native_module",
    "native_version",
]

try:
    from remotemedia_ray import _native
except ImportError as exc:  # not built, or built for another interpreter
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None
    if _native.build_profile != "release":
        warnings.warn(
            f"remotemedia_ray._native is a {_native.build_profile} build: native nodes "
            "will be slow. Do not benchmark a debug build; rebuild it with `make build` "
            "(maturin develop --release).",
            RuntimeWarning,
            stacklevel=2,
        )


def native_available() -> bool:
    """Whether the native extension was imported and its nodes can be used."""
    return _IMPORT_ERROR is None


def native_version() -> str | None:
    """The extension's version (the Cargo crate version), or None when it is unavailable."""
    return _native.__version__ if _IMPORT_ERROR is None else None


def native_build_profile() -> str | None:
    """``"release"`` or ``"debug"`` for the loaded extension, or None when it is unavailable."""
    return _native.build_profile if _IMPORT_ERROR is None else None


def native_module() -> ModuleType:
    """Return the imported extension module.

    Raises:
        NodeExecutionError: The extension could not be imported; the message
            gives the import error, which is also the ``__cause__``.
    """
    if _IMPORT_ERROR is not None:
        raise NodeExecutionError(
            f"the native extension remotemedia_ray._native is not available: {_IMPORT_ERROR}"
        ) from _IMPORT_ERROR
    return _native
