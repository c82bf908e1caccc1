"""The Ray actors' classes run in this process (no Ray): the plan's data flow,
upstream errors passed on, one output table per sink."""

from __future__ import annotations

from typing import Any

import pytest

import remotemedia_ray as rm
from remotemedia_ray._runtime.actors import FusedActor, NodeActor
from remotemedia_ray._runtime.batches import BatchItem, decode_batch, encode_batch, first_error
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
