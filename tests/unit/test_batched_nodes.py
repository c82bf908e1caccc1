"""Nodes that run a batch of items in one call (``execute_many``), on the local runtime."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from helpers import manifest

import remotemedia_ray as rm
from remotemedia_ray._runtime.execution import SinkCommit
from remotemedia_ray.audio import BufferChunks

BAD_RATE = 7999
"""Audio at this rate makes the test node fail (in both of its calls)."""


@rm.register_node("TestBatchedGain")
class BatchedGain(rm.NodeExecutor):
    """Doubles audio; says how many items the call that computed it held."""

    calls: list[int] = []  # noqa: RUF012 - the sizes of the calls, read by the tests

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> dict[str, Any]:
        return self.execute_many([input])[0]

    def execute_many(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        type(self).calls.append(len(inputs))
        out = []
        for audio in inputs:
            if audio.sample_rate == BAD_RATE:
                raise ValueError(f"cannot take {BAD_RATE} Hz")
            doubled = rm.AudioBuffer.from_numpy(audio.to_numpy() * 2, audio.sample_rate)
            out.append({"audio": doubled, "batch": len(inputs)})
        return out


class Collect:
    """A sink keeping what it was handed."""

    node_id = "collect"

    def __init__(self) -> None:
        self.outputs: dict[str, Mapping[str, Any]] = {}

    def write(self, outputs: Sequence[Mapping[str, Any]], item_ids: Sequence[str]) -> int:
        self.outputs.update(zip(item_ids, outputs, strict=True))
        return len(item_ids)


PIPELINE = manifest(
    [
        ("gain", "MultiplyNode", {"factor": 0.5}),
        ("batched", "TestBatchedGain", {}),
        ("mono", "ChannelMixNode", {}),
    ],
    [("gain", "batched")],
)


def _audio(n: int, rate: int = 16000) -> rm.AudioBuffer:
    x = np.random.default_rng(n).standard_normal((100 + n, 2)).astype(np.float32)
    return rm.AudioBuffer.from_numpy(x, rate)


def test_a_batching_node_gets_the_batch_in_one_call_with_the_same_outputs() -> None:
    items = [_audio(n) for n in range(5)]
    ids = [f"i{n}" for n in range(5)]
    with rm.Pipeline(PIPELINE, runtime="local") as pipeline:
        one_by_one = {out.item_id: out for out in pipeline.map(items, ids=ids)}
        BatchedGain.calls.clear()
        sink = Collect()
        commits = list(pipeline.write(items, sink, ids=ids, local_batch=5))
    assert BatchedGain.calls == [5]
    assert [c.record for c in commits if isinstance(c, SinkCommit)] == [5]
    assert set(sink.outputs) == set(one_by_one)
    for item_id, out in sink.outputs.items():
        assert out["batched"]["batch"] == 5
        assert out["batched"]["audio"] == one_by_one[item_id]["batched"]["audio"]
        assert out["mono"] == one_by_one[item_id]["mono"]


def test_an_item_failing_in_the_batch_fails_alone_naming_itself() -> None:
    items = [_audio(0), _audio(1, BAD_RATE), _audio(2)]
    with rm.Pipeline(PIPELINE, runtime="local", on_error="record") as pipeline:
        BatchedGain.calls.clear()
        sink = Collect()
        list(pipeline.write(items, sink, ids=["a", "b", "c"]))
        failures = pipeline.failures
    assert BatchedGain.calls == [3, 1, 1, 1]  # the batch, then one by one (each error named)
    assert sorted(sink.outputs) == ["a", "c"]
    assert [(f.item_id, f.node_id) for f in failures] == [("b", "batched")]
    assert f"cannot take {BAD_RATE} Hz" in failures[0].error.message
    assert sink.outputs["a"]["batched"]["batch"] == 1


def test_long_audio_in_a_batch_streams_and_the_rest_is_batched() -> None:
    long = _audio(7)
    items: list[Any] = [_audio(0), BufferChunks(long, 30), _audio(1)]
    with rm.Pipeline(PIPELINE, runtime="local") as pipeline:
        whole = pipeline.run(long)
        BatchedGain.calls.clear()
        sink = Collect()
        list(pipeline.write(items, sink, ids=["a", "long", "b"]))
    assert sorted(sink.outputs) == ["a", "b", "long"]
    assert 2 in BatchedGain.calls  # the two short items, in one call
    assert sink.outputs["long"]["batched"]["audio"] == whole["batched"]["audio"]
    assert sink.outputs["long"]["mono"] == whole["mono"]


@pytest.mark.parametrize("size", [0, 1])
def test_a_batch_of_none_or_one_item(size: int) -> None:
    with rm.Pipeline(PIPELINE, runtime="local") as pipeline:
        sink = Collect()
        commits = list(pipeline.write([_audio(n) for n in range(size)], sink))
    assert len(sink.outputs) == size
    assert len(commits) == size


def test_local_batch_applies_to_its_own_write_call_only() -> None:
    with rm.Pipeline(PIPELINE, runtime="local") as pipeline:
        first = [c.item_ids for c in pipeline.write([_audio(8)] * 3, Collect(), local_batch=1)]
        second = [c.item_ids for c in pipeline.write([_audio(8)] * 3, Collect())]
    assert [len(ids) for ids in first] == [1, 1, 1]
    assert [len(ids) for ids in second] == [3]
