"""Metrics: the seed's schema and types, rounding, aggregation, summary."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import manifest

import remotemedia_ray as rm
from remotemedia_ray.metrics import NodeMetrics, NodeMetricsRecorder, micros, millis

# Written by hand from the seed's Rust types (data model section 5).
SEED_SCHEMA = json.loads(
    (Path(__file__).parents[1] / "seed_metrics.schema.json").read_text(encoding="utf-8")
)
SUMMARY = re.compile(r"Pipeline completed in (\d+)ms \((\d+) nodes, (\d+\.\d\d)MB peak memory\)")

# The example JSON output of the seed's data model, verbatim.
SEED_EXAMPLE = """
{
  "total_time_ms": 1234,
  "total_memory_mb": 256.5,
  "node_count": 3,
  "nodes": [
    {"node_id": "vad", "node_type": "VADNode", "runtime": "rust_native",
     "execution_time_ms": 5, "memory_mb": 10.2, "status": "success", "retry_count": 0,
     "error": null},
    {"node_id": "resample", "node_type": "ResampleNode", "runtime": "rust_native",
     "execution_time_ms": 8, "memory_mb": 15.3, "status": "success", "retry_count": 0,
     "error": null},
    {"node_id": "whisper", "node_type": "RustWhisperTranscriber", "runtime": "cpython",
     "execution_time_ms": 1221, "memory_mb": 231.0, "status": "success", "retry_count": 1,
     "error": null}
  ]
}
"""


def seed_check(text: str) -> dict[str, Any]:
    """Validate JSON text against the seed schema; floats parse as Decimal, so that
    ``5.0`` is not an integer (serde's u64 refuses it)."""
    data = json.loads(text, parse_float=Decimal)
    jsonschema.validate(data, SEED_SCHEMA)
    return data


def test_schema_accepts_the_seed_example_and_rejects_wrong_types() -> None:
    data = seed_check(SEED_EXAMPLE)
    assert data["nodes"][2]["retry_count"] == 1
    for path, bad in [
        (("total_time_ms",), 1234.0),
        (("total_time_ms",), -1),
        (("node_count",), "3"),
        (("nodes", 0, "execution_time_ms"), 5.5),
        (("nodes", 0, "retry_count"), 2**32),
        (("nodes", 0, "runtime"), "RustNative"),
        (("nodes", 0, "status"), "ok"),
        (("nodes", 0, "memory_mb"), "10"),
    ]:
        broken = json.loads(SEED_EXAMPLE)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = bad
        with pytest.raises(jsonschema.ValidationError):
            seed_check(json.dumps(broken))
    missing = json.loads(SEED_EXAMPLE)
    del missing["nodes"][1]["error"]
    with pytest.raises(jsonschema.ValidationError, match="'error' is a required property"):
        seed_check(json.dumps(missing))


def test_seed_example_parses_and_round_trips_with_the_seed_types() -> None:
    metrics = rm.PipelineMetrics.model_validate_json(SEED_EXAMPLE)
    assert metrics.total_time_ms == 1234 and metrics.total_time_us == 1_234_000
    assert metrics.node("whisper").execution_time_us == 1_221_000
    assert metrics.summary() == "Pipeline completed in 1234ms (3 nodes, 256.50MB peak memory)"
    again = seed_check(metrics.to_json())
    seed = json.loads(SEED_EXAMPLE, parse_float=Decimal)
    for key in ("total_time_ms", "total_memory_mb", "node_count"):
        assert again[key] == seed[key]
    for ours, theirs in zip(again["nodes"], seed["nodes"], strict=True):
        assert {k: ours[k] for k in theirs} == theirs


def test_local_run_to_json_matches_the_seed_schema() -> None:
    m = manifest(
        [
            ("mul", "MultiplyNode", {"factor": 2}),
            ("add", "AddNode", {"addend": 1}),
            ("never", "MultiplyNode", {}),
            ("join", "AddNode", {}),
        ],
        [("mul", "add"), ("add", "join"), ("never", "join")],
    )
    with rm.Pipeline(m, runtime="local", on_error="record") as p:
        list(p.map([1.0, [1, 2, 3], "not a number", 4.5]))
        metrics = p.metrics
    data = seed_check(metrics.to_json())
    assert data["node_count"] == 4 == len(data["nodes"])
    by_id = {n["node_id"]: n for n in data["nodes"]}
    assert by_id["mul"]["status"] == "failed" and by_id["mul"]["error"].startswith("Marshaling")
    assert by_id["add"]["status"] == "success" and by_id["add"]["error"] is None
    for node in data["nodes"]:
        assert type(node["execution_time_ms"]) is int and type(node["retry_count"]) is int
        assert isinstance(node["memory_mb"], Decimal)  # a float in the JSON text
        assert node["execution_time_ms"] == millis(node["execution_time_us"])
        if node["p50_us"] is not None:
            assert type(node["p50_us"]) is int and node["p50_us"] <= node["p95_us"]
    assert type(data["total_time_ms"]) is int
    assert data["total_time_ms"] == millis(data["total_time_us"]) and data["total_time_us"] > 0


def test_summary_is_exactly_the_seed_format() -> None:
    metrics = rm.PipelineMetrics(total_time_us=1_234_567, total_memory_mb=256.5, node_count=3)
    assert metrics.summary() == "Pipeline completed in 1235ms (3 nodes, 256.50MB peak memory)"
    with rm.Pipeline(manifest([("mul", "MultiplyNode", {})], []), runtime="local") as p:
        p.run(1.0)
        metrics = p.metrics
    found = SUMMARY.fullmatch(metrics.summary())
    assert found is not None, metrics.summary()
    assert int(found[1]) == metrics.total_time_ms and int(found[2]) == 1
    assert found[3] == f"{metrics.total_memory_mb:.2f}"


@pytest.mark.parametrize(
    ("us", "ms"), [(0, 0), (499, 0), (500, 1), (1499, 1), (1500, 2), (2500, 3), (10**12, 10**9)]
)
def test_milliseconds_are_the_microseconds_rounded_to_nearest_halves_up(us: int, ms: int) -> None:
    assert millis(us) == ms
    node = rm.NodeMetrics(node_id="n", node_type="T", runtime="cpython", execution_time_us=us)
    assert node.execution_time_ms == ms
    assert rm.PipelineMetrics(total_time_us=us).total_time_ms == ms


def test_micros_rounds_seconds_to_whole_microseconds() -> None:
    assert micros(0.0) == 0 and micros(1.5) == 1_500_000 and micros(2.4e-6) == 2
    assert micros(-1e-9) == 0  # a clock that stepped back never gives a negative time


def test_times_given_in_milliseconds_fill_the_microseconds() -> None:
    node = rm.NodeMetrics(node_id="n", node_type="T", runtime="cpython", execution_time_ms=5)
    assert node.execution_time_us == 5000
    assert rm.NodeMetrics(node_id="n", node_type="T", runtime="cpython").execution_time_ms == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"execution_time_ms": 5.5},  # not a whole number of ms
        {"execution_time_ms": 2, "execution_time_us": 1000},  # disagree
        {"execution_time_us": -1},
        {"retry_count": 2**32},  # a u32
        {"runtime": "python"},
        {"status": "ok"},
        {"unknown_field": 1},
    ],
)
def test_node_metrics_reject_values_outside_the_seed_types(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        rm.NodeMetrics(**{"node_id": "n", "node_type": "T", "runtime": "cpython", **fields})


def test_recorder_keeps_microseconds_and_rounds_once() -> None:
    recorder = NodeMetricsRecorder("n", "T", "cpython")
    for _ in range(3):
        recorder.record_success(0.4)  # 0.4 ms each: 0 ms apiece, 1.2 ms together
    recorder.record_retry()
    snap = recorder.snapshot()
    assert (snap.execution_time_us, snap.execution_time_ms) == (1200, 1)
    assert (snap.p50_us, snap.p95_us, snap.retry_count, snap.status) == (400, 400, 1, "success")
    assert type(snap.p50_us) is int


def test_ray_merge_sums_microseconds_across_actors_before_rounding() -> None:
    part = rm.NodeMetrics(
        node_id="n",
        node_type="T",
        runtime="rust_native",
        execution_time_us=400,
        memory_mb=12.5,
        status="success",
        retry_count=1,
        items=2,
        p50_us=150,
        p95_us=390,
    )
    failed = part.model_copy(
        update={"status": "failed", "error": "PythonError: boom", "items_failed": 1}
    )
    merged = NodeMetrics.merge("n", "T", "rust_native", [part, part, failed])
    assert (merged.execution_time_us, merged.execution_time_ms) == (1200, 1)
    assert (merged.retry_count, merged.items, merged.items_failed) == (3, 6, 1)
    assert merged.status == "failed" and merged.error == "PythonError: boom"
    assert (merged.p50_us, merged.p95_us, merged.memory_mb) == (150, 390, 12.5)
    skipped = NodeMetrics.merge("n", "T", "cpython", [])
    assert (skipped.status, skipped.execution_time_ms) == ("skipped", 0)


def test_merge_sums_times_keeps_the_peak_and_applies_the_status_rule() -> None:
    from remotemedia_ray.metrics import NodeMetrics, node_status

    a = NodeMetrics(
        node_id="n",
        node_type="T",
        runtime="cpython",
        execution_time_us=1400,
        memory_mb=10.0,
        items=3,
        retry_count=1,
        p50_us=100,
        status="success",
    )
    b = NodeMetrics(
        node_id="n",
        node_type="T",
        runtime="cpython",
        execution_time_us=1300,
        memory_mb=30.0,
        items=1,
        items_failed=1,
        error="boom",
        retry_count=2,
        p50_us=300,
        status="failed",
    )
    merged = NodeMetrics.merge("n", "T", "cpython", [a, b])
    assert merged.execution_time_us == 2700 and merged.execution_time_ms == 3  # rounded once
    assert merged.memory_mb == 30.0 and merged.retry_count == 3
    assert (merged.items, merged.items_failed, merged.status) == (4, 1, "failed")
    assert merged.error == "boom" and merged.p50_us == 300
    assert NodeMetrics.merge("n", "T", "cpython", []).status == "skipped"
    assert NodeMetrics.merge("n", "T", "cpython", [a]).status == "success"
    assert [node_status(0, 0), node_status(2, 0), node_status(2, 1)] == [
        "skipped",
        "success",
        "failed",
    ]


def test_without_drops_nodes_and_counts_only_those_present() -> None:
    nodes = [
        NodeMetrics(node_id=n, node_type="AddNode", runtime="cpython") for n in ("a", "b", "c")
    ]
    metrics = rm.PipelineMetrics(nodes=nodes, node_count=3)
    kept = metrics.without(["b", "missing"])
    assert [n.node_id for n in kept.nodes] == ["a", "c"]
    assert kept.node_count == 2
    assert metrics.node_count == 3 and len(metrics.nodes) == 3  # the original is unchanged
