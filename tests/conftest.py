"""Settings of every test suite.

Under CI (the environment variable ``CI`` set, as CI services do, to anything
but ``0``/``false``/``no``) a skipped test fails: ``make test`` installs what
the tests need (``make test-deps``), so a skip there is something to
investigate, not a pass. Expected failures (``xfail``) are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _fail_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and _under_ci():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        ci = os.environ["CI"]
        report.longrepr = f"skipped under CI (CI={ci!r}), which runs every test: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    outcome = yield
    _fail_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[Any]:
    outcome = yield  # a module skipped while collected (importorskip at module level)
    _fail_skip(outcome.get_result())
