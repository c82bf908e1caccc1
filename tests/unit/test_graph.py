"""PipelineGraph: Kahn's algorithm, fan-in/out, cycles."""

from __future__ import annotations

import pytest

import remotemedia_ray as rm


def test_linear_order_sources_sinks() -> None:
    g = rm.PipelineGraph(["c", "b", "a"], [("a", "b"), ("b", "c")])
    assert g.execution_order == ("a", "b", "c")
    assert g.sources == ("a",)
    assert g.sinks == ("c",)
    assert g.parents("b") == ("a",)
    assert g.children("b") == ("c",)


def test_diamond_fan_out_and_fan_in_keep_connection_order() -> None:
    g = rm.PipelineGraph(
        ["src", "left", "right", "join"],
        [("src", "right"), ("src", "left"), ("right", "join"), ("left", "join")],
    )
    order = g.execution_order
    assert order[0] == "src" and order[-1] == "join"
    assert g.children("src") == ("right", "left")
    assert g.parents("join") == ("right", "left")


def test_ties_follow_manifest_order() -> None:
    g = rm.PipelineGraph(["x", "y", "z"], [])
    assert g.execution_order == ("x", "y", "z")
    assert g.sources == g.sinks == ("x", "y", "z")


def test_disconnected_parts() -> None:
    g = rm.PipelineGraph(["a1", "b1", "a2", "b2"], [("a1", "a2"), ("b1", "b2")])
    order = g.execution_order
    assert order.index("a1") < order.index("a2")
    assert order.index("b1") < order.index("b2")
    assert g.sources == ("a1", "b1")
    assert g.sinks == ("a2", "b2")


def test_empty_graph() -> None:
    g = rm.PipelineGraph([], [])
    assert g.execution_order == () and g.sources == () and g.sinks == ()
    assert len(g) == 0


def test_cycle_error_names_exactly_the_unsorted_nodes() -> None:
    # a -> b -> c -> b, c -> d: b, c are on the cycle, d is downstream of it; a sorts.
    with pytest.raises(rm.CycleError) as info:
        rm.PipelineGraph(
            ["a", "b", "c", "d", "e"], [("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")]
        )
    assert info.value.nodes == ["b", "c", "d"]
    assert "b, c, d" in str(info.value)
    assert isinstance(info.value, rm.GraphError) and isinstance(info.value, ValueError)


def test_self_loop_is_a_cycle() -> None:
    with pytest.raises(rm.CycleError) as info:
        rm.PipelineGraph(["a", "loop"], [("a", "loop"), ("loop", "loop")])
    assert info.value.nodes == ["loop"]


def test_unknown_ids() -> None:
    with pytest.raises(rm.GraphError, match="unknown node 'ghost'"):
        rm.PipelineGraph(["a"], [("a", "ghost")])
    g = rm.PipelineGraph(["a"], [])
    with pytest.raises(rm.NodeNotFound):
        g.parents("ghost")
    with pytest.raises(rm.GraphError, match="duplicate node ids"):
        rm.PipelineGraph(["a", "a"], [])


def test_a_self_loop_in_a_manifest_is_a_cycle() -> None:
    with pytest.raises(rm.CycleError) as info:
        rm.Manifest.from_dict(
            {
                "version": "v1",
                "nodes": [{"id": "n", "node_type": "AddNode"}],
                "connections": [{"from": "n", "to": "n"}],
            }
        )
    assert info.value.nodes == ["n"]


def test_from_manifest_takes_nodes_and_connections() -> None:
    m = rm.Manifest.from_dict(
        {
            "version": "v1",
            "nodes": [{"id": "b", "node_type": "AddNode"}, {"id": "a", "node_type": "AddNode"}],
            "connections": [{"from": "a", "to": "b"}],
        }
    )
    graph = rm.PipelineGraph.from_manifest(m)
    assert graph.execution_order == ("a", "b")
    assert graph.nodes == ("b", "a")
