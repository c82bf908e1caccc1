"""remotemedia_ray: run RemoteMedia pipeline manifests on Ray.

Import it as ``import remotemedia_ray as rm``. Importing is cheap: it does
not start or import Ray and does not load the native extension.
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from remotemedia_ray import errors
from remotemedia_ray._runtime.execution import ItemFailure, PipelineOutput
from remotemedia_ray._runtime.pools import Pool, PoolLayout
from remotemedia_ray._runtime.ray_cluster import RayOptions
from remotemedia_ray._runtime.retry import CircuitBreaker, RetryPolicy
from remotemedia_ray.audio import (
    AudioBuffer,
    AudioChunks,
    AudioFormat,
    BufferChunks,
    Clip,
    Clips,
    audio_table,
    buffers_from_table,
)
from remotemedia_ray.errors import (
    AudioFormatError,
    ConfigError,
    CycleError,
    GraphError,
    InputError,
    ManifestError,
    MarshalingError,
    NodeExecutionError,
    NodeNotFound,
    PythonError,
    RemoteMediaError,
    RetryableError,
    UnknownNodeType,
)
from remotemedia_ray.graph import PipelineGraph
from remotemedia_ray.manifest import ExecutionOptions, Manifest, NodeSpec
from remotemedia_ray.metrics import NodeMetrics, PipelineMetrics
from remotemedia_ray.nodes.base import (
    Capability,
    ChunkStream,
    MapChunks,
    NodeExecutor,
    NodeMetadata,
    NodeState,
)
from remotemedia_ray.nodes.native import native_available
from remotemedia_ray.nodes.registry import available_node_types, create_node, register_node
from remotemedia_ray.pipeline import Pipeline, PipelineState

try:
    __version__ = _version("remotemedia-ray")
except _PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "AudioBuffer",
    "AudioChunks",
    "AudioFormat",
    "AudioFormatError",
    "BufferChunks",
    "Capability",
    "ChunkStream",
    "CircuitBreaker",
    "Clip",
    "Clips",
    "ConfigError",
    "CycleError",
    "ExecutionOptions",
    "GraphError",
    "InputError",
    "ItemFailure",
    "Manifest",
    "ManifestError",
    "MapChunks",
    "MarshalingError",
    "NodeExecutionError",
    "NodeExecutor",
    "NodeMetadata",
    "NodeMetrics",
    "NodeNotFound",
    "NodeSpec",
    "NodeState",
    "Pipeline",
    "PipelineGraph",
    "PipelineMetrics",
    "PipelineOutput",
    "PipelineState",
    "Pool",
    "PoolLayout",
    "PythonError",
    "RayOptions",
    "RemoteMediaError",
    "RetryPolicy",
    "RetryableError",
    "UnknownNodeType",
    "__version__",
    "audio_table",
    "available_node_types",
    "buffers_from_table",
    "create_node",
    "errors",
    "native_available",
    "register_node",
]
