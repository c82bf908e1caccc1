"""Pools chosen by resource needs on a real multi-node Ray cluster: a GPU node of a
fused pipeline gets a pool of its own on the node that has the GPU, a cluster
without one refuses the pipeline at build time, and with ``wait_for_resources``
the build waits for a GPU node to join.

Ray counts GPUs as declared, so the cluster's GPU node here declares one
(``num_gpus=1``) that the test machine does not have: what is tested is where
Ray places the actors and what the executor does, not CUDA.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ids_exactly_once, manifest, own_ray, sink_table

import remotemedia_ray as rm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPEECH_PREP = EXAMPLES / "speech_prep.json"
GPU_CHAIN = manifest(
    [
        ("gain", "MultiplyNode", {"factor": 2.0}),
        ("model", "AddNode", {"addend": 1.0}),
        ("tail", "MultiplyNode", {"factor": -1.0}),
    ],
    [("gain", "model"), ("model", "tail")],
)
GPU_CHAIN["nodes"][1]["capabilities"] = {"gpu": {"type": "cuda", "required": True}}


def cpu_twin() -> dict[str, Any]:
    """The same pipeline without the GPU requirement (what the local runtime can run)."""
    nodes = [{k: v for k, v in n.items() if k != "capabilities"} for n in GPU_CHAIN["nodes"]]
    return {**GPU_CHAIN, "nodes": nodes}


@pytest.fixture()
def cluster(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A two-CPU head with no GPU (or as many as the test's indirect parameter says),
    this test's own (the session's Ray waits meanwhile)."""
    import ray
    from ray.cluster_utils import Cluster

    gpus = getattr(request, "param", 0)

    def start() -> Cluster:
        made = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 2, "num_gpus": gpus, "include_dashboard": False},
        )
        try:
            ray.init(address=made.address, configure_logging=False)
        except BaseException:
            made.shutdown()
            raise
        return made

    with own_ray(start, stop=lambda made: made.shutdown()) as made:
        yield made


def host_of(pipeline_id: str, pool: str) -> str:
    import ray

    actor = ray.get_actor(f"rm:{pipeline_id}:{pool}:0")
    host: str = ray.get(actor.host.remote(), timeout=60)
    return host


def test_a_gpu_node_fails_the_build_on_a_cluster_without_gpus(cluster: Any) -> None:
    started = time.monotonic()
    with pytest.raises(rm.ManifestError, match="node 'model' needs 1 GPU") as info:
        rm.Pipeline(GPU_CHAIN, runtime="ray", fuse=True).open()
    assert info.value.node_id == "model"
    assert time.monotonic() - started < 30  # refused at once, not after a wait


def test_the_build_waits_for_a_gpu_node_and_the_gpu_pool_lands_there(cluster: Any) -> None:
    import ray

    items: list[Any] = [1.0, np.arange(4, dtype=np.float32), 2.5]
    with rm.Pipeline(cpu_twin(), runtime="local") as p:
        expected = list(p.map(items))
    pipeline = rm.Pipeline(
        GPU_CHAIN, runtime="ray", fuse=True, wait_for_resources=True, ready_timeout_s=120
    )
    opened: list[BaseException | None] = []

    def build() -> None:  # Ray's cluster_utils adds nodes from the main thread only
        try:
            pipeline.open()
            opened.append(None)
        except BaseException as exc:
            opened.append(exc)

    builder = threading.Thread(target=build)
    builder.start()
    time.sleep(3)
    assert builder.is_alive()  # still waiting for a GPU
    joined = cluster.add_node(num_cpus=1, num_gpus=1).node_id
    builder.join(timeout=150)
    with pipeline as p:
        assert opened == [None]
        layout = p.plan()
        got = list(p.map(items))
        assert p.pipeline_id is not None
        gpu_host = host_of(p.pipeline_id, "fused-2")
        cpu_host = host_of(p.pipeline_id, "fused-1")
    assert [pool.nodes for pool in layout.pools] == [("gain",), ("model",), ("tail",)]
    assert [pool.num_gpus for pool in layout.pools] == [0.0, 1.0, 0.0]
    assert gpu_host == joined  # only the new node has a GPU
    assert cpu_host in {n["NodeID"] for n in ray.nodes()}
    assert [r.item_id for r in got] == [r.item_id for r in expected]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(np.asarray(a["tail"]), np.asarray(b["tail"]))


@pytest.mark.parametrize("cluster", [1], indirect=True, ids=["one-gpu-head"])
def test_the_dataset_job_runs_cpu_and_gpu_nodes_as_pools_with_the_same_rows(
    cluster: Any, tmp_path: Path
) -> None:
    """speech_prep with its VAD on a GPU: three pools, the rows of an all-CPU run."""
    from remotemedia_ray.dataset import JobConfig, plan_job, run_job

    gpu_manifest = json.loads(SPEECH_PREP.read_text())
    next(n for n in gpu_manifest["nodes"] if n["id"] == "vad")["capabilities"] = {
        "gpu": {"type": "cuda"}
    }
    gpu_path = tmp_path / "gpu.json"
    gpu_path.write_text(json.dumps(gpu_manifest))
    corpus = tmp_path / "in"
    shutil.copytree(EXAMPLES / "audio", corpus)

    def job(manifest: Path, out: str, runtime: str) -> JobConfig:
        return JobConfig(
            manifest=manifest,
            input=str(corpus),
            outdir=tmp_path / out,
            runtime=runtime,  # type: ignore[arg-type]
            batch_size=2,
            progress="off",
        )

    layout = plan_job(job(gpu_path, "x", "ray"), cpus=2, gpus=1)
    assert [p.num_gpus for p in layout.pools] == [0.0, 1.0, 0.0]
    assert run_job(job(gpu_path, "pools", "ray")).exit_code == 0
    assert run_job(job(SPEECH_PREP, "local", "local")).exit_code == 0
    for sink in ("vad", "pcm16"):
        pooled = sink_table(tmp_path / "pools", sink).sort_by("id")
        local = sink_table(tmp_path / "local", sink).sort_by("id")
        ids_exactly_once(pooled)
        assert pooled.num_rows == local.num_rows == len(list(corpus.iterdir()))
        assert pooled.select(local.column_names).equals(local)
