"""The ``remotemedia-ray`` command line.

remotemedia-ray validate MANIFEST [MANIFEST ...]   exit 0 when all are valid, 1 otherwise
remotemedia-ray nodes [--json]                      node types, parameters, runtimes
remotemedia-ray schema                              the manifest JSON schema
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from remotemedia_ray.errors import RemoteMediaError

__all__ = ["main"]


def _validate(args: argparse.Namespace) -> int:
    from remotemedia_ray.manifest import Manifest
    from remotemedia_ray.runtime.plan import PipelinePlan

    failures = 0
    for path in args.manifests:
        try:
            manifest = Manifest.from_file(path)
            plan = PipelinePlan.build(manifest, args.runtime)
        except RemoteMediaError as exc:
            failures += 1
            print(f"invalid: {path}\n  {exc}", file=sys.stderr)
            continue
        runtimes = ", ".join(f"{n.node_id}={n.runtime}" for n in plan.nodes.values())
        print(f"ok: {path} ({len(plan.nodes)} nodes: {runtimes})")
    return 1 if failures else 0


def _node_catalog() -> list[dict[str, Any]]:
    from remotemedia_ray.nodes.native import native_available
    from remotemedia_ray.nodes.registry import available_node_types, node_class

    catalog = []
    for node_type in available_node_types():
        runtimes = []
        params: dict[str, Any] = {}
        doc = ""
        for runtime in ("cpython", "rust_native"):
            cls = node_class(node_type, runtime)
            if cls is None or (runtime == "rust_native" and not native_available()):
                continue
            runtimes.append(runtime)
            doc = doc or (cls.__doc__ or "").strip().splitlines()[0]
            if cls.Params is not None and not params:
                schema = cls.Params.model_json_schema()
                for name, prop in schema.get("properties", {}).items():
                    params[name] = {
                        "default": prop.get("default"),
                        "description": prop.get("description", ""),
                    }
        catalog.append(
            {"node_type": node_type, "runtimes": runtimes, "description": doc, "params": params}
        )
    return catalog


def _nodes(args: argparse.Namespace) -> int:
    catalog = _node_catalog()
    if args.json:
        print(json.dumps(catalog, indent=2))
        return 0
    for entry in catalog:
        print(f"{entry['node_type']}  [{', '.join(entry['runtimes'])}]")
        if entry["description"]:
            print(f"    {entry['description']}")
        for name, info in entry["params"].items():
            print(f"    {name} = {info['default']!r}  {info['description']}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from remotemedia_ray.manifest import Manifest

    print(json.dumps(Manifest.json_schema(), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    from remotemedia_ray import __version__

    parser = argparse.ArgumentParser(
        prog="remotemedia-ray",
        description="Run RemoteMedia pipeline manifests on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = sub.add_parser("validate", help="check manifests (exit 0 if all are valid)")
    validate.add_argument("manifests", nargs="+", metavar="MANIFEST", help=".json/.yaml file")
    validate.add_argument(
        "--runtime",
        choices=["auto", "cpython", "rust_native"],
        default=None,
        help="check that every node can run on this runtime (default: each node's hint)",
    )
    validate.set_defaults(func=_validate)

    nodes = sub.add_parser("nodes", help="list node types, their parameters and runtimes")
    nodes.add_argument("--json", action="store_true", help="machine-readable output")
    nodes.set_defaults(func=_nodes)

    schema = sub.add_parser("schema", help="print the manifest JSON schema")
    schema.set_defaults(func=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``remotemedia-ray`` console script."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RemoteMediaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
