"""Handing one batch of 1 KB .. 100 MB to a Ray actor.

A batch is what travels between node actors: the Arrow table of
:func:`remotemedia_ray._runtime.batches.encode_batch`, here holding one float32
audio item of ``batch_bytes``. ``setup`` starts an embedded Ray (2 CPUs, no
dashboard), puts the batch in the object store and starts the actors;
``teardown`` shuts Ray down. Every timed call waits for the actor's result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

import remotemedia_ray as rm

from ._common import start_ray, stop_ray

BATCH_BYTES = [1_000, 1_000_000, 100_000_000]

PASS_THROUGH = "BenchPassThrough"


@rm.register_node(PASS_THROUGH)
class _PassThrough(rm.NodeExecutor):
    """Returns its input as it is: a pipeline node that only moves batches."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> Any:
        return input


class _Reader:
    """A bare actor: the size of the batch table it is handed (it reads, returns an int)."""

    def nbytes(self, table: Any) -> int:
        return int(table.nbytes)


class BatchHandOff:
    """One batch table (one float32 audio item of ``batch_bytes``) handed to an actor.

    * ``time_actor_reads_stored_batch``: a bare actor call given the batch's
      object ref (already in the object store); the actor maps it without a copy;
    * ``time_pipeline_run``: ``Pipeline.run`` of the audio through a one-node
      pass-through pipeline on Ray: driver -> actor -> driver.
    """

    params = (BATCH_BYTES,)
    param_names = ("batch_bytes",)
    rounds = 1  # each round starts its own Ray; the repeats within a round suffice
    timeout = 300

    def setup(self, batch_bytes: int) -> None:
        from remotemedia_ray._runtime.batches import BatchItem, encode_batch

        ray = start_ray()
        self.ray = ray
        samples = np.linspace(-1.0, 1.0, batch_bytes // 4, dtype=np.float32)
        self.audio = rm.AudioBuffer.from_numpy(samples, 16_000)
        self.ref = ray.put(encode_batch([BatchItem("0", self.audio)]))
        self.reader = ray.remote(_Reader).options(num_cpus=0).remote()
        ray.get(self.reader.nbytes.remote(self.ref))  # started, and the batch mapped once
        one_node = {
            "version": "v1",
            "metadata": {"name": "pass-through"},
            "nodes": [{"id": "node", "node_type": PASS_THROUGH, "params": {}}],
            "connections": [],
        }
        self.pipeline = rm.Pipeline(one_node, runtime="ray", batch_size=1).open()
        self.pipeline.run(self.audio)

    def teardown(self, batch_bytes: int) -> None:
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None:
            pipeline.close()
        stop_ray()

    def time_actor_reads_stored_batch(self, batch_bytes: int) -> None:
        self.ray.get(self.reader.nbytes.remote(self.ref))

    def time_pipeline_run(self, batch_bytes: int) -> None:
        self.pipeline.run(self.audio)
