"""Node lifecycle, registry, runtime resolution and the built-in nodes' marshaling."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

import remotemedia_ray as rm
from remotemedia_ray.nodes import registry


class Doubler(rm.NodeExecutor):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.calls.append("initialize")

    def execute(self, input: Any) -> Any:
        self.calls.append("execute")
        return input * 2

    def cleanup(self) -> None:
        self.calls.append("cleanup")


def test_lifecycle_in_order() -> None:
    node = Doubler()
    assert node.state is rm.NodeState.CREATED
    node.initialize({})
    assert node.state is rm.NodeState.INITIALIZED
    assert node.execute(2) == 4
    assert node.execute(3) == 6
    node.cleanup()
    assert node.state is rm.NodeState.CLEANED
    assert node.calls == ["initialize", "execute", "execute", "cleanup"]


def test_execute_before_initialize_raises() -> None:
    node = Doubler()
    node.node_id = "dbl"
    with pytest.raises(rm.NodeExecutionError, match=r"execute\(\) before initialize\(\)") as info:
        node.execute(1)
    assert info.value.node_id == "dbl"
    assert node.calls == []


def test_execute_after_cleanup_raises_and_cleanup_is_idempotent() -> None:
    node = Doubler()
    node.initialize({})
    node.cleanup()
    node.cleanup()
    assert node.calls == ["initialize", "cleanup"]
    with pytest.raises(rm.NodeExecutionError, match=r"after cleanup\(\)"):
        node.execute(1)
    with pytest.raises(rm.NodeExecutionError, match=r"initialize\(\) after cleanup"):
        node.initialize({})


def test_initialize_twice_raises() -> None:
    node = Doubler()
    node.initialize({})
    with pytest.raises(rm.NodeExecutionError, match="called twice"):
        node.initialize({})


def test_nodes_without_cleanup_still_reach_cleaned() -> None:
    class NoCleanup(rm.NodeExecutor):
        def initialize(self, params: Mapping[str, Any]) -> None:
            pass

        def execute(self, input: Any) -> Any:
            return input

    node = NoCleanup()
    node.initialize({})
    node.cleanup()
    assert node.state is rm.NodeState.CLEANED
    with pytest.raises(rm.NodeExecutionError):
        node.execute(1)


def test_lifecycle_holds_through_subclass_super_calls() -> None:
    class Tripler(Doubler):
        def execute(self, input: Any) -> Any:
            return super().execute(input) // 2 * 3

        def cleanup(self) -> None:
            self.calls.append("tripler-cleanup")
            super().cleanup()

    node = Tripler()
    node.initialize({})
    assert node.execute(2) == 6
    node.cleanup()
    node.cleanup()
    assert node.calls == ["initialize", "execute", "tripler-cleanup", "cleanup"]


def test_metadata_reports_type_version_capabilities() -> None:
    node = rm.create_node("ResampleNode", runtime="cpython")
    meta = node.metadata()
    assert meta.node_type == "ResampleNode"
    assert meta.version
    assert rm.Capability.AUDIO in meta.capabilities


def test_builtin_types_are_registered() -> None:
    types = rm.available_node_types()
    for name in (
        "VADNode",
        "ResampleNode",
        "FormatConverterNode",
        "MultiplyNode",
        "AddNode",
        "ChannelMixNode",
    ):
        assert name in types


def test_create_node_returns_uninitialized_executor() -> None:
    node = rm.create_node("MultiplyNode", runtime="cpython")
    assert node.state is rm.NodeState.CREATED
    assert node.runtime == "cpython"
    node.initialize({"factor": 4})
    assert node.execute(2.5) == 10.0


def test_unknown_node_type_is_node_not_found() -> None:
    with pytest.raises(rm.NodeNotFound, match="unknown node type 'Nope'.*registered types"):
        rm.create_node("Nope")


def test_register_user_node_and_duplicate_rejected() -> None:
    @rm.register_node("TestUserGain")
    class Gain(rm.NodeExecutor):
        def initialize(self, params: Mapping[str, Any]) -> None:
            self.gain = params.get("gain", 1.0)

        def execute(self, input: Any) -> Any:
            return input * self.gain

    assert "TestUserGain" in rm.available_node_types()
    node = rm.create_node("TestUserGain")
    assert isinstance(node, Gain)
    with pytest.raises(rm.ManifestError, match="already registered"):

        @rm.register_node("TestUserGain")
        class Other(Gain):
            pass

    with pytest.raises(rm.ManifestError, match="built-in"):

        @rm.register_node("AddNode")
        class FakeAdd(Gain):
            pass


def test_rust_native_without_extension_names_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    from remotemedia_ray.nodes import native

    monkeypatch.setattr(native, "native_available", lambda: False)
    if registry.node_class("AddNode", "rust_native") is None:
        needle = "[node 'mix'] AddNode has no rust_native implementation"
    else:
        needle = "[node 'mix'] AddNode requires the native extension"
    with pytest.raises(rm.ManifestError, match=f"^{re.escape(needle)}"):
        registry.resolve_node_class("AddNode", "rust_native", node_id="mix")
    # auto falls back to the numpy implementation instead
    assert registry.resolve_node_class("AddNode", "auto").runtime == "cpython"


def test_auto_falls_back_to_cpython_when_no_native() -> None:
    cls = registry.resolve_node_class("AddNode", "auto")
    native = registry.node_class("AddNode", "rust_native")
    expected = "rust_native" if native is not None and rm.native_available() else "cpython"
    assert cls.runtime == expected


def test_cpython_only_user_node_refuses_rust_native() -> None:
    with pytest.raises(rm.ManifestError, match="TestUserGain2 has no rust_native"):

        @rm.register_node("TestUserGain2")
        class Gain2(Doubler):
            pass

        registry.resolve_node_class("TestUserGain2", "rust_native")


def test_entry_point_nodes_are_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    ep = metadata.EntryPoint(
        name="TestEntryPointNode", value=f"{__name__}:Doubler", group=registry.ENTRY_POINT_GROUP
    )
    broken = metadata.EntryPoint(
        name="BrokenNode", value="no_such_module_xyz:Thing", group=registry.ENTRY_POINT_GROUP
    )

    def fake_entry_points(*, group: str) -> list[metadata.EntryPoint]:
        return [ep, broken] if group == registry.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry.importlib_metadata, "entry_points", fake_entry_points)
    registry._load_entry_points()
    assert "TestEntryPointNode" in rm.available_node_types()
    assert "BrokenNode" not in rm.available_node_types()


# -- built-in node marshaling ------------------------------------------------------------


def initialized(node_type: str, **params: Any) -> rm.NodeExecutor:
    node = rm.create_node(node_type, runtime="cpython")
    node.node_id = node_type.lower()
    node.initialize(params)
    return node


def test_multiply_and_add_on_numbers_lists_arrays() -> None:
    mul = initialized("MultiplyNode", factor=3)
    add = initialized("AddNode", addend=0.5)
    assert mul.execute(2) == 6.0
    assert mul.execute([1, 2.5]) == [3.0, 7.5]
    np.testing.assert_array_equal(mul.execute(np.array([1.0, -2.0])), [3.0, -6.0])
    assert add.execute(1) == 1.5
    assert add.execute([1, 2]) == [1.5, 2.5]


def test_default_params() -> None:
    assert initialized("MultiplyNode").execute(3) == 6.0  # factor 2.0
    assert initialized("AddNode").execute(3) == 3.0  # addend 0.0


def test_fan_in_add_sums_and_multiply_multiplies() -> None:
    add = initialized("AddNode", addend=1)
    mul = initialized("MultiplyNode", factor=10)
    assert add.execute({"a": 1.0, "b": 2.0, "c": 3.0}) == 7.0
    assert mul.execute({"a": 2.0, "b": 3.0}) == 60.0
    assert add.execute({"a": [1, 2], "b": [10, 20]}) == [12.0, 23.0]


def test_arithmetic_on_audio_keeps_format_and_saturates_ints() -> None:
    buf = rm.AudioBuffer.from_numpy(np.array([1000, -20000, 30000], dtype=np.int16), 8000)
    out = initialized("MultiplyNode", factor=2).execute(buf)
    assert isinstance(out, rm.AudioBuffer)
    assert out.format is rm.AudioFormat.I16 and out.sample_rate == 8000
    np.testing.assert_array_equal(out.to_numpy(), [2000, -32768, 32767])
    mixed = initialized("AddNode").execute({"x": buf, "y": buf})
    np.testing.assert_array_equal(mixed.to_numpy(), [2000, -32768, 32767])


@pytest.mark.parametrize("bad", ["text", {"a": "x"}, [1, "2"], [True], None, object(), True])
def test_non_numeric_input_is_marshaling_error(bad: Any) -> None:
    with pytest.raises(rm.MarshalingError) as info:
        initialized("AddNode").execute(bad)
    assert info.value.node_id == "addnode"


def test_mixed_input_kinds_rejected() -> None:
    with pytest.raises(rm.MarshalingError, match="one kind"):
        initialized("AddNode").execute({"a": 1.0, "b": [1.0]})


def test_audio_nodes_reject_non_audio_and_fan_in() -> None:
    node = initialized("ResampleNode")
    with pytest.raises(rm.MarshalingError, match="takes an AudioBuffer, got list"):
        node.execute([1, 2])
    buf = rm.AudioBuffer.from_numpy(np.zeros(10, np.float32), 16000)
    with pytest.raises(rm.MarshalingError, match="takes one audio input but received 2"):
        node.execute({"a": buf, "b": buf})


def test_vad_sample_rate_param_must_match_input() -> None:
    node = initialized("VADNode", sample_rate=16000)
    buf = rm.AudioBuffer.from_numpy(np.zeros(100, np.float32), 8000)
    with pytest.raises(rm.AudioFormatError, match="8000 Hz but params.sample_rate is 16000"):
        node.execute(buf)


@pytest.mark.parametrize(
    ("node_type", "params", "needle"),
    [
        ("ResampleNode", {"target_rate": 0}, "param 'target_rate'"),
        ("ResampleNode", {"quality": "ultra"}, "param 'quality'"),
        ("ResampleNode", {"target_rat": 8000}, "unknown param 'target_rat'"),
        ("FormatConverterNode", {"target_format": "u8"}, "param 'target_format'"),
        ("VADNode", {"frame_length_ms": 0}, "param 'frame_length_ms'"),
        ("VADNode", {"threshold": float("nan")}, "param 'threshold'"),
        ("MultiplyNode", {"factor": "big"}, "param 'factor'"),
        ("MultiplyNode", {"factor": float("inf")}, "param 'factor'"),
        ("ChannelMixNode", {"mode": "sum"}, "param 'mode'"),
    ],
)
def test_bad_params_are_manifest_errors_naming_node_and_param(
    node_type: str, params: dict[str, Any], needle: str
) -> None:
    node = rm.create_node(node_type, runtime="cpython")
    node.node_id = "n1"
    with pytest.raises(rm.ManifestError) as info:
        node.initialize(params)
    assert needle in str(info.value)
    assert "node 'n1'" in str(info.value)


def test_format_converter_node_roundtrip() -> None:
    x = np.array([[0.5, -0.5], [1.0, -1.0]], dtype=np.float32)
    buf = rm.AudioBuffer.from_numpy(x, 48000)
    i16 = initialized("FormatConverterNode", target_format="i16").execute(buf)
    assert i16.format is rm.AudioFormat.I16 and i16.channels == 2
    np.testing.assert_array_equal(i16.to_numpy(), [[16384, -16384], [32767, -32768]])
    back = initialized("FormatConverterNode", target_format="f32").execute(i16)
    assert back.format is rm.AudioFormat.F32


def test_channel_mix_node_mean_and_select() -> None:
    x = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    buf = rm.AudioBuffer.from_numpy(x, 16000)
    mono = initialized("ChannelMixNode").execute(buf)
    assert mono.channels == 1
    np.testing.assert_array_equal(mono.to_numpy(), [0.5, 0.5])
    right = initialized("ChannelMixNode", mode="select", channel=1).execute(buf)
    np.testing.assert_array_equal(right.to_numpy(), [0.75, 0.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32])
def test_channel_mix_passes_mono_through_as_the_kernel_would_compute_it(dtype: Any) -> None:
    if np.dtype(dtype).kind == "f":
        x = np.array([[0.0], [-0.0], [0.5], [np.nan], [-1.0]], dtype=dtype)
    else:
        x = np.array([[0], [1], [-7], [np.iinfo(dtype).min], [np.iinfo(dtype).max]], dtype=dtype)
    buf = rm.AudioBuffer.from_numpy(x, 16000)
    for params in ({"mode": "mean"}, {"mode": "select", "channel": 0}):
        out = initialized("ChannelMixNode", **params).execute(buf)
        assert out is buf  # no copy, no work
        kernel = rm.nodes.reference.channel_mix(x, params["mode"])
        assert kernel.tobytes() == out.to_numpy().tobytes()
    only_once = r"^\[node 'channelmixnode'\] [^\[]*channel 1 out of range"
    with pytest.raises(rm.ConfigError, match=only_once):
        initialized("ChannelMixNode", mode="select", channel=1).execute(buf)


def test_resample_node_output_rate_and_length() -> None:
    buf = rm.AudioBuffer.from_numpy(np.zeros((4800, 2), np.int16), 48000)
    out = initialized("ResampleNode", target_rate=16000).execute(buf)
    assert (out.sample_rate, out.channels, out.num_frames) == (16000, 2, 1600)
    assert out.format is rm.AudioFormat.F32
