"""RemoteMedia pipeline manifests (schema v1) as pydantic models.

A manifest is a JSON (or YAML) document describing a DAG of media nodes::

    {
      "version": "v1",
      "metadata": {"name": "speech-prep"},
      "nodes": [
        {"id": "resample", "node_type": "ResampleNode", "params": {"target_rate": 16000}},
        {"id": "vad", "node_type": "VADNode", "execution": {"replicas": 2}}
      ],
      "connections": [{"from": "resample", "to": "vad"}]
    }

The fields are exactly those of the RemoteMedia v1 JSON schema, plus two
extensions of this project: an optional top-level ``$schema`` key, and an
optional per-node ``execution`` object (:class:`ExecutionOptions`) telling
the Ray runtime how to run the node. Unknown keys are rejected, naming the key.

Loading (:meth:`Manifest.from_file`, :meth:`Manifest.from_json`,
:meth:`Manifest.from_dict`) checks the structure; :meth:`Manifest.validate`
adds the semantic rules (unique ids, known connection endpoints, a DAG).
Every rejection is a :class:`~remotemedia_ray.errors.ManifestError` (a
``ValueError``) whose message names the field or node.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from remotemedia_ray.errors import ManifestError

__all__ = [
    "Connection",
    "CpuRequirement",
    "ExecutionOptions",
    "GpuRequirement",
    "Manifest",
    "ManifestMetadata",
    "NodeCapabilities",
    "NodeSpec",
    "RuntimeHint",
]

RuntimeHint = Literal["rust_native", "cpython", "auto"]
"""Which implementation of a node to run: native Rust, numpy/Python, or the best available."""

_ID_PATTERN = r"^[a-zA-Z0-9_-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ManifestMetadata(_Strict):
    """Descriptive metadata of a pipeline."""

    name: str = Field(min_length=1, max_length=255, description="Pipeline name.")
    description: str | None = Field(default=None, description="Human-readable description.")
    created_at: str | None = Field(default=None, description="ISO 8601 creation time.")


class GpuRequirement(_Strict):
    """A node's GPU needs."""

    type: Literal["cuda", "rocm", "metal", "vulkan", "any"] = Field(description="GPU runtime type.")
    min_memory_gb: float | None = Field(default=None, ge=0, description="Minimum GPU memory.")
    required: bool = Field(default=True, description="Whether the GPU is required.")


class CpuRequirement(_Strict):
    """A node's CPU needs."""

    cores: int | None = Field(default=None, ge=1, description="Minimum number of CPU cores.")
    arch: Literal["x86_64", "aarch64", "arm", "any"] | None = Field(
        default=None, description="CPU architecture preference."
    )


class NodeCapabilities(_Strict):
    """Resource requirements of a node (``capabilities`` in the v1 schema)."""

    gpu: GpuRequirement | None = None
    cpu: CpuRequirement | None = None
    memory_gb: float | None = Field(default=None, ge=0, description="Required memory in GB.")


class ExecutionOptions(_Strict):
    """How the Ray runtime runs one node (this project's extension of the v1 schema)."""

    replicas: int = Field(default=1, ge=1, le=1024, description="Actors in the node's pool.")
    num_cpus: float | None = Field(
        default=None, ge=0, le=1024, description="CPUs reserved per actor (Ray's num_cpus)."
    )
    num_gpus: float | None = Field(
        default=None, ge=0, le=64, description="GPUs reserved per actor (Ray's num_gpus)."
    )
    max_restarts: int = Field(
        default=3, ge=-1, le=1000, description="Times Ray restarts a dead actor (-1: forever)."
    )
    max_task_retries: int = Field(
        default=3, ge=-1, le=1000, description="Times Ray re-runs a call lost to a dead actor."
    )
    batch_size: int | None = Field(
        default=None, ge=1, le=1_000_000, description="Items per batch sent to the node."
    )


class NodeSpec(_Strict):
    """One node of a manifest."""

    id: str = Field(pattern=_ID_PATTERN, description="Unique node identifier within the pipeline.")
    node_type: str = Field(min_length=1, description="Registered node type, e.g. ResampleNode.")
    params: dict[str, Any] = Field(default_factory=dict, description="Node parameters.")
    capabilities: NodeCapabilities | None = Field(
        default=None, description="Optional resource requirements."
    )
    host: str | None = Field(
        default=None, pattern=r"^[^:]+:\d+$", description="Optional remote host (host:port)."
    )
    runtime_hint: RuntimeHint = Field(
        default="auto", description="rust_native, cpython, or auto (native when available)."
    )
    execution: ExecutionOptions = Field(
        default_factory=ExecutionOptions, description="Ray execution options."
    )


class Connection(_Strict):
    """A directed edge: ``from``'s output feeds ``to``."""

    from_: str = Field(alias="from", pattern=_ID_PATTERN, description="Source node id.")
    to: str = Field(pattern=_ID_PATTERN, description="Target node id.")


class Manifest(_Strict):
    """A RemoteMedia pipeline manifest (schema v1).

    Build one with :meth:`from_file`, :meth:`from_json` or :meth:`from_dict`
    and check it with :meth:`validate`.
    """

    schema_uri: str | None = Field(
        default=None, alias="$schema", description="Optional URI of the JSON schema."
    )
    version: str = Field(description='Manifest schema version; must be "v1".')
    metadata: ManifestMetadata
    nodes: list[NodeSpec] = Field(min_length=1, description="Processing nodes.")
    connections: list[Connection] = Field(description="Data flow between nodes.")

    # -- loading ----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse a manifest from a mapping; raises ManifestError naming the bad field."""
        if not isinstance(data, dict):
            raise ManifestError(f"a manifest must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ManifestError(_describe(exc, data)) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(
                f"manifest is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        return cls.from_dict(data)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Manifest:
        """Parse a manifest from YAML text."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ManifestError(f"manifest is not valid YAML: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Manifest:
        """Load a manifest from a ``.json``, ``.yaml`` or ``.yml`` file."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ManifestError(
                f"{path}: unsupported manifest file type {suffix!r} (use .json, .yaml or .yml)"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
        try:
            return cls.from_json(text) if suffix == ".json" else cls.from_yaml(text)
        except ManifestError as exc:
            raise ManifestError(f"{path}: {exc.message}") from None

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The JSON schema of manifests (by alias: ``from``, ``$schema``)."""
        schema = cls.model_json_schema(by_alias=True)
        schema["title"] = "RemoteMedia Pipeline Manifest (v1)"
        return schema

    # -- semantic rules ---------------------------------------------------------------

    def validate(self) -> Manifest:  # type: ignore[override]
        """Apply the semantic rules; returns ``self`` so calls can chain.

        Raises:
            ManifestError: version is not "v1", a node id repeats, a connection
                names an unknown node, or a connection is repeated.
            CycleError: the connections form a cycle (a ``ManifestError``'s
                sibling: both are ``ValueError``); ``.nodes`` names the nodes.
        """
        from remotemedia_ray.graph import PipelineGraph

        if self.version != "v1":
            raise ManifestError(f'unsupported manifest version {self.version!r}; expected "v1"')
        seen: set[str] = set()
        for index, node in enumerate(self.nodes):
            if node.id in seen:
                raise ManifestError(f"nodes[{index}]: duplicate node id {node.id!r}")
            seen.add(node.id)
        edges: set[tuple[str, str]] = set()
        for index, conn in enumerate(self.connections):
            for end, node_id in (("from", conn.from_), ("to", conn.to)):
                if node_id not in seen:
                    raise ManifestError(f"connections[{index}].{end}: unknown node {node_id!r}")
            if (conn.from_, conn.to) in edges:
                raise ManifestError(
                    f"connections[{index}]: duplicate connection {conn.from_!r} -> {conn.to!r}"
                )
            edges.add((conn.from_, conn.to))
        PipelineGraph.from_manifest(self, validate=False)
        return self

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id; raises NodeNotFound."""
        from remotemedia_ray.errors import NodeNotFound

        for node in self.nodes:
            if node.id == node_id:
                return node
        raise NodeNotFound(f"no node {node_id!r} in manifest", node_id=node_id)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict (aliases, defaults left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_json(self) -> str:
        """The manifest as pretty JSON."""
        return json.dumps(self.to_dict(), indent=2)


def _describe(exc: ValidationError, data: dict[str, Any]) -> str:
    """One line per problem, each naming the field path (and node id)."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        if error["type"] == "extra_forbidden":
            lines.append(f"{_path(loc[:-1], data)}: unknown key {loc[-1]!r}")
            continue
        path = _path(loc, data)
        if error["type"] == "missing":
            lines.append(f"{path}: required field missing")
        else:
            lines.append(f"{path}: {error['msg']}")
    head = "invalid manifest: " if len(lines) == 1 else "invalid manifest:\n  "
    return head + "\n  ".join(lines)


def _path(loc: tuple[int | str, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node = None
    for i, key in enumerate(loc):
        if isinstance(key, int):
            parts.append(f"[{key}]")
            if i == 1 and loc[0] == "nodes":
                nodes = data.get("nodes")
                if isinstance(nodes, list) and key < len(nodes) and isinstance(nodes[key], dict):
                    node = nodes[key].get("id")
        else:
            parts.append(("." if parts else "") + str(key))
    path = "".join(parts) or "manifest"
    if isinstance(node, str):
        path += f" (node {node!r})"
    return path
