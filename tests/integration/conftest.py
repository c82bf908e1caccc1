"""Shared Ray for the integration tests.

One local Ray (2 CPUs) serves every test of the session that asks for the
``ray_session`` fixture; ``ray.init`` costs seconds. Failure tests that kill
processes or nodes start their own cluster instead and must not use it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# A second driver joining a head started here must not need a token.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray shared by the session (started once, shut down at the end)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(params=["local", "ray"])
def job_runtime(request: pytest.FixtureRequest) -> str:
    """Each of the job's runtimes in turn; ``"ray"`` comes with the shared Ray running."""
    runtime: str = request.param
    if runtime == "ray":
        request.getfixturevalue("ray_session")
    return runtime


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.ray)
