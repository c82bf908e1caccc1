"""The native extension is built, versioned and typed as the package expects.

These tests need the extension (``make build``); they pin how it is wired into
the package, not what its kernels compute.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import remotemedia_ray
from remotemedia_ray.errors import NodeExecutionError
from remotemedia_ray.nodes import native

PACKAGE_DIR = Path(remotemedia_ray.__file__).parent
STUB = PACKAGE_DIR / "_native.pyi"
ONLY_IMPORTER = PACKAGE_DIR / "nodes" / "native.py"


def _imports_native(source: str) -> bool:
    """Whether Python source imports the extension, by any spelling of the import."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            if any(alias.name.split(".")[-1] == "_native" for alias in node.names):
                return True
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[-1] == "_native":
                return True
            if module in ("", "remotemedia_ray") and any(a.name == "_native" for a in node.names):
                return True
    return re.search(r"import_module\(\s*['\"][\w.]*_native['\"]", source) is not None


def _run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter (module state here stays untouched)."""
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_extension_imports() -> None:
    assert native.native_available()
    module = native.native_module()
    assert module.__name__ == "remotemedia_ray._native"


def test_extension_version_is_package_version() -> None:
    assert native.native_version() == importlib.metadata.version("remotemedia-ray")
    assert native.native_module().__version__ == native.native_version()


def test_extension_is_release_build() -> None:
    assert native.native_build_profile() == "release"


def test_only_nodes_native_imports_extension() -> None:
    importers = sorted(
        str(path.relative_to(PACKAGE_DIR))
        for path in PACKAGE_DIR.rglob("*.py")
        if _imports_native(path.read_text(encoding="utf-8"))
    )
    assert importers == [str(ONLY_IMPORTER.relative_to(PACKAGE_DIR))]


@pytest.mark.parametrize(
    "source",
    [
        "import remotemedia_ray._native",
        "import remotemedia_ray._native as n",
        "from remotemedia_ray import _native",
        "from .. import _native",
        "from remotemedia_ray._native import build_profile",
        "import importlib\nimportlib.import_module('remotemedia_ray._native')",
    ],
)
def test_import_scan_recognises_every_spelling(source: str) -> None:
    assert _imports_native(source)


def test_stub_names_match_extension() -> None:
    stub = ast.parse(STUB.read_text(encoding="utf-8"))
    stub_names = {
        target.id
        for node in stub.body
        if isinstance(node, ast.AnnAssign) and isinstance(target := node.target, ast.Name)
    } | {node.name for node in stub.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    module = native.native_module()
    runtime_names = {n for n in dir(module) if not n.startswith("_") or n == "__version__"}
    assert stub_names == runtime_names
    stub_all = next(
        ast.literal_eval(node.value)
        for node in stub.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    )
    assert sorted(stub_all) == sorted(module.__all__) == sorted(runtime_names)


def test_missing_extension_is_reported_not_raised_at_import() -> None:
    result = _run_isolated(
        "import sys\n"
        "sys.modules['remotemedia_ray._native'] = None\n"
        "from remotemedia_ray.errors import NodeExecutionError\n"
        "from remotemedia_ray.nodes import native\n"
        "assert not native.native_available()\n"
        "assert native.native_version() is None\n"
        "assert native.native_build_profile() is None\n"
        "try:\n"
        "    native.native_module()\n"
        "except NodeExecutionError as err:\n"
        "    assert 'remotemedia_ray._native is not available' in str(err), err\n"
        "    assert isinstance(err.__cause__, ImportError)\n"
        "else:\n"
        "    raise AssertionError('native_module() did not raise')\n"
    )
    assert result.returncode == 0, result.stderr


def test_debug_build_warns_once_at_import() -> None:
    result = _run_isolated(
        "import sys, types\n"
        "fake = types.ModuleType('remotemedia_ray._native')\n"
        "fake.__version__ = '0.0.0'\n"
        "fake.build_profile = 'debug'\n"
        "sys.modules['remotemedia_ray._native'] = fake\n"
        "from remotemedia_ray.nodes import native\n"
        "import importlib\n"
        "importlib.import_module('remotemedia_ray.nodes.native')\n"
        "assert native.native_build_profile() == 'debug'\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("RuntimeWarning") == 1, result.stderr
    assert "Do not benchmark a debug build" in result.stderr


def test_release_build_does_not_warn() -> None:
    result = _run_isolated(
        "from remotemedia_ray.nodes import native\nassert native.native_available()"
    )
    assert result.returncode == 0, result.stderr
    assert "RuntimeWarning" not in result.stderr


def test_native_module_error_is_runtime_error() -> None:
    assert issubclass(NodeExecutionError, RuntimeError)
