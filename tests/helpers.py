"""Builders every test suite shares (``tests/`` is on ``sys.path``: pytest puts the
folder of the root ``conftest.py`` there)."""

from __future__ import annotations

from typing import Any

NodeRow = tuple[str, str, dict[str, Any]]
"""``(id, node_type, params)`` of one manifest node."""


def manifest(
    nodes: list[NodeRow], edges: list[tuple[str, str]], *, name: str = "test"
) -> dict[str, Any]:
    """A manifest dict (the data model's JSON form) of ``nodes`` joined by ``edges``."""
    return {
        "version": "v1",
        "metadata": {"name": name},
        "nodes": [{"id": i, "node_type": t, "params": p} for i, t, p in nodes],
        "connections": [{"from": a, "to": b} for a, b in edges],
    }
