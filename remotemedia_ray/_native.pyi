"""Typed stub of the private extension module ``remotemedia_ray._native``.

Built from ``rust_ext/`` by maturin. Import it only through
``remotemedia_ray.nodes.native``. ``mypy.stubtest`` keeps this stub true.
"""

__all__ = ["__version__", "build_profile"]

__version__: str
"""The crate version (Cargo.toml), equal to the package version."""

build_profile: str
"""``"release"`` or ``"debug"``: the Cargo profile the extension was built with."""
