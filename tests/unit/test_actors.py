"""The Ray actors' classes run in this process (no Ray): the plan's data flow,
upstream errors passed on, one output table per sink."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import remotemedia_ray as rm
from remotemedia_ray._runtime.actors import FusedActor, NodeActor
from remotemedia_ray._runtime.batches import BatchItem, decode_batch, encode_batch, first_error
from remotemedia_ray._runtime.execution import ItemFailure, PipelineOutput, SinkCommit, write_batch
from remotemedia_ray._runtime.plan import PIPELINE_INPUT, PipelinePlan
from remotemedia_ray._runtime.retry import RetryPolicy

MIXER = rm.Manifest.from_dict(
    {
        "version": "v1",
        "nodes": [
            {"id": "double", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
            {"id": "shift", "node_type": "AddNode", "params": {"addend": 10.0}},
            {"id": "mix", "node_type": "AddNode", "params": {"addend": 0.0}},
        ],
        "connections": [
            {"from": "double", "to": "mix"},
            {"from": "shift", "to": "mix"},
        ],
    }
)
NO_RETRY = RetryPolicy(max_retries=0)


def plan() -> PipelinePlan:
    return PipelinePlan.build(MIXER, "cpython")


def values(table: Any) -> list[Any]:
    return [item.error if item.error is not None else item.value for item in decode_batch(table)]


def test_input_keys_name_parents_or_the_pipeline_input() -> None:
    p = plan()
    assert p.input_keys("double") == (PIPELINE_INPUT,)
    assert p.input_keys("mix") == ("double", "shift")
    assert p.node_input("double", 3.0, {}) == 3.0
    assert p.node_input("mix", None, {"double": 1.0, "shift": 2.0}) == {"double": 1.0, "shift": 2.0}


def test_a_source_actor_gets_the_pipeline_input() -> None:
    actor = NodeActor(plan(), "double", NO_RETRY)
    out = actor.execute_batch(encode_batch([BatchItem("a", 1.5), BatchItem("b", [1, 2])]))
    assert values(out) == [3.0, [2.0, 4.0]]
    assert actor.metrics().items == 2


def test_a_fan_in_actor_gets_its_parents_by_id_in_connection_order() -> None:
    actor = NodeActor(plan(), "mix", NO_RETRY)
    left = encode_batch([BatchItem("a", 2.0), BatchItem("b", 4.0)])
    right = encode_batch([BatchItem("a", 11.0), BatchItem("b", 12.0)])
    assert values(actor.execute_batch(left, right)) == [13.0, 16.0]


def test_an_item_failed_upstream_passes_its_error_on() -> None:
    actor = NodeActor(plan(), "mix", NO_RETRY)
    upstream = rm.MarshalingError("bad input", node_id="double", item_id="b")
    left = encode_batch([BatchItem("a", 2.0), BatchItem("b", error=upstream)])
    right = encode_batch([BatchItem("a", 11.0), BatchItem("b", 12.0)])
    out = decode_batch(actor.execute_batch(left, right))
    assert out[0].value == 13.0
    assert out[1].error is not None and out[1].error.node_id == "double"
    assert actor.metrics().items == 1  # the failed item never ran here


def test_an_item_failing_here_is_recorded_and_the_rest_go_on() -> None:
    actor = NodeActor(plan(), "double", NO_RETRY)
    out = decode_batch(
        actor.execute_batch(encode_batch([BatchItem("a", "text"), BatchItem("b", 1)]))
    )
    assert isinstance(out[0].error, rm.MarshalingError)
    assert out[0].error.node_id == "double" and out[0].error.item_id == "a"
    assert out[1].value == 2.0


def test_the_fused_actor_returns_one_table_per_sink_and_passes_errors() -> None:
    manifest = rm.Manifest.from_dict(
        {
            "version": "v1",
            "nodes": [
                {"id": "double", "node_type": "MultiplyNode", "params": {"factor": 2.0}},
                {"id": "plus", "node_type": "AddNode", "params": {"addend": 1.0}},
                {"id": "times", "node_type": "MultiplyNode", "params": {"factor": 3.0}},
            ],
            "connections": [
                {"from": "double", "to": "plus"},
                {"from": "double", "to": "times"},
            ],
        }
    )
    actor = FusedActor(PipelinePlan.build(manifest, "cpython"), NO_RETRY)
    earlier = rm.AudioFormatError("broken", node_id="reader", item_id="c")
    batch = encode_batch([BatchItem("a", 1.0), BatchItem("b", "x"), BatchItem("c", error=earlier)])
    plus, times = actor.execute_batch(batch)
    assert values(plus)[0] == 3.0 and values(times)[0] == 6.0
    for table in (plus, times):
        failed = decode_batch(table)
        assert failed[1].error is not None and failed[1].error.node_id == "double"
        assert failed[2].error is not None and failed[2].error.node_id == "reader"
    actor.cleanup()


@pytest.mark.parametrize(
    ("errors", "expected"),
    [([None, None], None), ([None, "x"], "x"), (["y", "x"], "y")],
)
def test_first_error_is_the_first_failed_row(
    errors: list[str | None], expected: str | None
) -> None:
    items = [BatchItem("i", error=None if e is None else rm.MarshalingError(e)) for e in errors]
    found = first_error(items)
    assert (None if found is None else found.message) == expected


class _ListSink:
    """A BatchSink that keeps what it is given (and can be told to fail)."""

    node_id = "test:sink"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[list[str], list[dict[str, Any]]]] = []

    def write(self, outputs: Any, item_ids: Any) -> dict[str, int]:
        if self.fail:
            raise OSError("disk full")
        self.calls.append((list(item_ids), [dict(o) for o in outputs]))
        return {"rows": len(item_ids)}


def test_the_fused_actor_hands_a_batch_to_a_sink_and_returns_its_record() -> None:
    actor = FusedActor(plan(), NO_RETRY)
    earlier = rm.AudioFormatError("broken", node_id="reader", item_id="b")
    batch = encode_batch([BatchItem("a", 1.0), BatchItem("b", error=earlier), BatchItem("c", 2.0)])
    sink = _ListSink()
    outcome = actor.execute_batch(batch, sink=sink)
    (failure,) = [o for o in outcome if isinstance(o, ItemFailure)]
    (commit,) = [o for o in outcome if isinstance(o, SinkCommit)]
    assert (failure.item_id, failure.node_id) == ("b", "reader")
    assert commit.item_ids == ["a", "c"] and commit.record == {"rows": 2}
    assert sink.calls == [(["a", "c"], [{"mix": 13.0}, {"mix": 16.0}])]  # 2a + (a + 10)
    actor.cleanup()


def test_a_sink_that_fails_fails_each_of_its_items_at_the_sink() -> None:
    outcome = write_batch(
        _ListSink(fail=True), [PipelineOutput("a", {"x": 1}), PipelineOutput("b", {"x": 2})]
    )
    assert [(o.item_id, o.node_id) for o in outcome] == [("a", "test:sink"), ("b", "test:sink")]
    assert all(isinstance(o, ItemFailure) and o.error.item_id == o.item_id for o in outcome)
    assert "disk full" in outcome[0].error.message


def test_the_batch_codec_round_trips_audio_values_and_errors() -> None:
    tone = rm.AudioBuffer.from_numpy(np.arange(6, dtype=np.float32).reshape(3, 2), 8000)
    error = rm.NodeExecutionError("failed", node_id="n", item_id="e")
    items = [
        BatchItem("none-1", {"path": "x.wav"}),
        BatchItem("none-2", [1, 2]),
        BatchItem("audio", tone),
        BatchItem("e", error=error),
        BatchItem("none-3", None),
    ]
    table = encode_batch(items)
    audio = table.column("audio")
    assert audio.num_chunks == 3  # two nulls, the buffer, two nulls: runs of nulls are one chunk
    back = decode_batch(table)
    assert [b.item_id for b in back] == [i.item_id for i in items]
    assert back[0].value == {"path": "x.wav"} and back[1].value == [1, 2] and back[4].value is None
    np.testing.assert_array_equal(back[2].value.to_numpy(), tone.to_numpy())
    assert (back[2].value.sample_rate, back[2].value.channels) == (8000, 2)
    assert back[3].error is not None and back[3].error.message == "failed"
