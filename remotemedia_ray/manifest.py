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

The fields are exactly those of the RemoteMedia v1 JSON schema: only
``version``, ``nodes`` and ``connections`` are required, ``metadata`` and each
of its fields are optional, and ``nodes`` may be empty. This project adds
optional extensions: a top-level ``$schema`` key, and per node
``capabilities`` and ``execution`` (:class:`ExecutionOptions`, telling the
Ray runtime how to run the node). Unknown keys are rejected,
naming the key, and values follow the schema's JSON types strictly (``"16000"``
is not a number, ``true`` is not an integer).

A :class:`Manifest` is valid by construction: besides its structure, a
pydantic after-validator applies the semantic rules (version ``"v1"``,
unique node ids, connections between existing nodes, no repeated
connection, no cycle). Loading (:meth:`Manifest.from_file`,
:meth:`Manifest.from_json`, :meth:`Manifest.from_dict`) reports every
problem at once in one :class:`~remotemedia_ray.errors.ManifestError` (a
``ValueError``) whose lines name the field and node; when the connections
form a cycle it is a :class:`~remotemedia_ray.errors.CycleError` (also a
``ManifestError``) whose ``nodes`` name the nodes left unsorted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from remotemedia_ray.errors import ConfigError, CycleError, ManifestError, NodeNotFound
from remotemedia_ray.graph import PipelineGraph

__all__ = [
    "RUNTIME_HINTS",
    "Connection",
    "CpuRequirement",
    "ExecutionOptions",
    "GpuRequirement",
    "Manifest",
    "ManifestMetadata",
    "NodeCapabilities",
    "NodeSpec",
    "RuntimeHint",
    "check_runtime_hint",
]

RuntimeHint = Literal["rust_native", "cpython", "auto"]
"""Which implementation of a node to run: native Rust, numpy/Python, or the best available
(a node's ``runtime_hint``, and every override of it: ``node_runtime=``, ``--node-runtime``)."""

RUNTIME_HINTS: tuple[str, ...] = get_args(RuntimeHint)
"""The values of :data:`RuntimeHint`, in order (``rust_native``, ``cpython``, ``auto``)."""


def check_runtime_hint(value: object, name: str) -> RuntimeHint | None:
    """``value`` as a runtime override (None: no override).

    Raises:
        ConfigError: ``value`` is not one of :data:`RUNTIME_HINTS`, naming ``name``.
    """
    if value is not None and value not in RUNTIME_HINTS:
        choices = ", ".join(repr(v) for v in RUNTIME_HINTS)
        raise ConfigError(f"{name} must be one of {choices}, got {value!r}")
    return value  # type: ignore[return-value]


_ID_PATTERN = r"^[a-zA-Z0-9_-]+$"
_ID_RULE = (
    "a node id may hold only ASCII letters, digits, '_' and '-' (ids name output "
    "folders and Ray actors)"
)
_MAX_FILE_BYTES = 16 * 1024 * 1024
_RULES_ERROR = "manifest_rules"
_MAX_MEMORY_GB = 1024.0 * 1024.0  # one PiB: bounds what Ray is asked for


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class ManifestMetadata(_Strict):
    """Descriptive metadata of a pipeline; every field is optional."""

    name: str | None = Field(default=None, max_length=255, description="Pipeline name.")
    description: str | None = Field(default=None, description="Human-readable description.")
    created_at: str | None = Field(default=None, description="ISO 8601 creation time.")


class GpuRequirement(_Strict):
    """A node's GPU needs."""

    type: Literal["cuda", "rocm", "metal", "vulkan", "any"] = Field(description="GPU runtime type.")
    min_memory_gb: float | None = Field(
        default=None, ge=0, le=_MAX_MEMORY_GB, description="Minimum GPU memory."
    )
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
    memory_gb: float | None = Field(
        default=None, ge=0, le=_MAX_MEMORY_GB, description="Required memory in GB."
    )


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
    """A RemoteMedia pipeline manifest (schema v1), valid by construction.

    Build one with :meth:`from_file`, :meth:`from_json` or :meth:`from_dict`;
    each raises one :class:`~remotemedia_ray.errors.ManifestError` listing
    every problem.
    """

    schema_uri: str | None = Field(
        default=None, alias="$schema", description="Optional URI of the JSON schema."
    )
    version: Literal["v1"] = Field(description='Manifest schema version; must be "v1".')
    metadata: ManifestMetadata = Field(
        default_factory=ManifestMetadata, description="Optional descriptive metadata."
    )
    nodes: list[NodeSpec] = Field(description="Processing nodes (may be empty).")
    connections: list[Connection] = Field(description="Data flow between nodes.")

    @model_validator(mode="after")
    def _apply_rules(self) -> Manifest:
        problems, _ = _rule_problems(
            [(i, node.id) for i, node in enumerate(self.nodes)],
            [(i, conn.from_, conn.to) for i, conn in enumerate(self.connections)],
        )
        if problems:
            raise PydanticCustomError(_RULES_ERROR, "{problems}", {"problems": "; ".join(problems)})
        return self

    # -- loading ----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Parse a manifest from a mapping.

        Raises:
            ManifestError: one error listing every problem, each naming its
                field (and node): structure, unknown keys, types, and the rules.
            CycleError: the same, when the connections form a cycle.
        """
        if not isinstance(data, dict):
            raise ManifestError(f"a manifest must be a JSON object, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            structural = _describe(exc, data)
        except RecursionError:
            raise ManifestError("manifest is nested too deeply") from None
        rules, cycle = _rule_problems(*_raw_graph(data))
        raise _manifest_error(structural + rules, cycle)

    @classmethod
    def from_json(cls, text: str | bytes) -> Manifest:
        """Parse a manifest from JSON text (strict JSON: no NaN or Infinity, no key
        repeated in an object; a UTF-8 byte order mark, which some editors write, is
        skipped as YAML skips it)."""
        if isinstance(text, bytes) and text.startswith(b"\xef\xbb\xbf"):
            text = text[3:]
        elif isinstance(text, str) and text.startswith("\ufeff"):
            text = text[1:]
        try:
            data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise ManifestError(
                f"manifest is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from None
        except UnicodeDecodeError as exc:
            raise ManifestError(f"manifest is not UTF-8 text: {_unicode_problem(exc)}") from None
        except RecursionError:
            raise ManifestError("manifest is nested too deeply") from None
        except ValueError as exc:  # parse_constant
            raise ManifestError(f"manifest is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Manifest:
        """Parse a manifest from YAML text.

        Anchors and aliases (``&a`` / ``*a``) are refused: they let a few bytes
        expand into gigabytes. Timestamps stay strings, as in JSON. A key
        repeated in a mapping is refused (PyYAML would keep the last silently).
        """
        try:
            data = yaml.load(text, Loader=_ManifestYamlLoader)
        except yaml.YAMLError as exc:
            raise ManifestError(f"manifest is not valid YAML: {exc}") from None
        except UnicodeDecodeError as exc:
            raise ManifestError(f"manifest is not UTF-8 text: {_unicode_problem(exc)}") from None
        except RecursionError:
            raise ManifestError("manifest is nested too deeply") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | Path) -> Manifest:
        """Load a manifest from a ``.json``, ``.yaml`` or ``.yml`` file (UTF-8, at most 16 MB).

        Every error names the file.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ManifestError(
                f"{path}: unsupported manifest file type {suffix!r} (use .json, .yaml or .yml)"
            )
        try:
            with path.open("rb") as handle:
                raw = handle.read(_MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc.strerror or exc}") from None
        if len(raw) > _MAX_FILE_BYTES:
            raise ManifestError(f"{path}: manifest is larger than {_MAX_FILE_BYTES >> 20} MB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(
                f"{path}: manifest is not UTF-8 text: {_unicode_problem(exc)}"
            ) from None
        try:
            return cls.from_json(text) if suffix == ".json" else cls.from_yaml(text)
        except CycleError as exc:
            raise CycleError(f"{path}: {exc.message}", nodes=exc.nodes) from None
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
        """Check the semantic rules again; returns ``self`` so calls can chain.

        A manifest built by the loaders already satisfies them; this is the
        data model's ``validate()``, and catches models made with
        ``model_construct``.

        Raises:
            ManifestError: version is not "v1", a node id repeats, a connection
                names an unknown node, or a connection is repeated (all listed).
            CycleError: the connections form a cycle (also a ``ManifestError``);
                ``.nodes`` names the nodes left unsorted.
        """
        problems: list[str] = []
        if self.version != "v1":
            problems.append(_version_problem(self.version))
        rules, cycle = _rule_problems(
            [(i, node.id) for i, node in enumerate(self.nodes)],
            [(i, conn.from_, conn.to) for i, conn in enumerate(self.connections)],
        )
        if problems or rules:
            raise _manifest_error(problems + rules, cycle)
        return self

    def node(self, node_id: str) -> NodeSpec:
        """The node with this id; raises NodeNotFound."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise NodeNotFound(f"no node {node_id!r} in manifest", node_id=node_id)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a JSON-ready dict (aliases, unset optional fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_json(self) -> str:
        """The manifest as pretty JSON."""
        return json.dumps(self.to_dict(), indent=2)


# -- the semantic rules, on parsed or raw data ---------------------------------------


def _rule_problems(
    nodes: Iterable[tuple[int, str]], connections: Iterable[tuple[int, str, str]]
) -> tuple[list[str], list[str] | None]:
    """Every broken rule (one line each) and, if there is a cycle, its unsorted nodes."""
    problems: list[str] = []
    ids: list[str] = []
    for index, node_id in nodes:
        if node_id in ids:
            problems.append(f"nodes[{index}]: duplicate node id {node_id!r}")
        else:
            ids.append(node_id)
    known = set(ids)
    edges: list[tuple[str, str]] = []
    for index, src, dst in connections:
        bad = False
        for end, node_id in (("from", src), ("to", dst)):
            if node_id not in known:
                problems.append(f"connections[{index}].{end}: unknown node {node_id!r}")
                bad = True
        if bad:
            continue
        if (src, dst) in edges:
            problems.append(f"connections[{index}]: duplicate connection {src!r} -> {dst!r}")
            continue
        edges.append((src, dst))
    try:
        PipelineGraph(ids, edges)
    except CycleError as exc:
        problems.append(exc.message)
        return problems, exc.nodes
    return problems, None


def _raw_graph(
    data: dict[str, Any],
) -> tuple[list[tuple[int, str]], list[tuple[int, str, str]]]:
    """The ids and connections of unparsed data, as far as they are well formed."""
    nodes = data.get("nodes")
    connections = data.get("connections")
    ids = [
        (i, node["id"])
        for i, node in enumerate(nodes if isinstance(nodes, list) else [])
        if isinstance(node, dict) and isinstance(node.get("id"), str)
    ]
    edges = [
        (i, conn["from"], conn["to"])
        for i, conn in enumerate(connections if isinstance(connections, list) else [])
        if isinstance(conn, dict)
        and isinstance(conn.get("from"), str)
        and isinstance(conn.get("to"), str)
    ]
    return ids, edges


def _manifest_error(problems: list[str], cycle: list[str] | None) -> ManifestError:
    head = "invalid manifest: " if len(problems) == 1 else "invalid manifest:\n  "
    message = head + "\n  ".join(problems)
    if cycle is not None:
        return CycleError(message, nodes=cycle)
    return ManifestError(message)


def _version_problem(version: object) -> str:
    return f'version: unsupported manifest version {version!r}; expected "v1"'


def _describe(exc: ValidationError, data: dict[str, Any]) -> list[str]:
    """One line per structural problem, each naming the field path (and node id)."""
    lines = []
    for error in exc.errors():
        loc = error["loc"]
        kind = error["type"]
        if kind == _RULES_ERROR:
            continue  # the rules are reported from the raw data, one line each
        if kind == "extra_forbidden" and loc[-1] == "host" and len(loc) == 3:
            lines.append(
                f"{_path(loc[:-1], data)}: 'host' (running a node on a remote RemoteMedia "
                "server) is not supported: every node runs on the Ray cluster; remove it"
            )
        elif kind == "extra_forbidden":
            lines.append(f"{_path(loc[:-1], data)}: unknown key {loc[-1]!r}")
        elif loc == ("version",) and kind == "literal_error":
            lines.append(_version_problem(error["input"]))
        elif kind == "missing":
            lines.append(f"{_path(loc, data)}: required field missing")
        elif kind == "string_pattern_mismatch" and loc[-1] in ("id", "from", "to"):
            lines.append(f"{_path(loc, data)}: {_ID_RULE}, got {error['input']!r}")
        else:
            lines.append(f"{_path(loc, data)}: {error['msg']}")
    return lines


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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a repeated key (json keeps the last silently)."""
    data = dict(pairs)
    if len(data) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key!r} appears twice in one object")
            seen.add(key)
    return data


def _unicode_problem(exc: UnicodeDecodeError) -> str:
    return f"byte {exc.start} cannot be decoded ({exc.reason})"


_YAML_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")
"""``<<`` and ``=``, which PyYAML resolves itself."""


class _ManifestYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and without implicit timestamps."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases are not allowed in manifests (found *{event.anchor})",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag in _YAML_SPECIAL_KEYS:  # a merge key's pairs may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                repeated = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: the base class says so
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
        return super().construct_mapping(node, deep)


_ManifestYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
