"""The data model's node contract, the same in both runtimes: mono audio comes
back 1-D, and a bad parameter is a ConfigError naming the node (once) and the
parameter."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import remotemedia_ray as rm

pytestmark = pytest.mark.skipif(not rm.native_available(), reason="native extension not built")

RUNTIMES = ["cpython", "rust_native"]
AUDIO_NODES: list[tuple[str, dict[str, Any]]] = [
    ("ResampleNode", {"target_rate": 16000}),
    ("MultiplyNode", {"factor": 0.5}),
    ("AddNode", {"addend": 0.25}),
    ("FormatConverterNode", {"target_format": "i16"}),
    ("FormatConverterNode", {"target_format": "f64"}),
    ("ChannelMixNode", {"mode": "mean"}),
    ("ChannelMixNode", {"mode": "select", "channel": 1}),
]


def node(node_type: str, runtime: str, **params: Any) -> rm.NodeExecutor:
    executor = rm.create_node(node_type, runtime=runtime)
    assert executor.runtime == runtime
    executor.node_id = "n"
    executor.initialize(params)
    return executor


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(("node_type", "params"), AUDIO_NODES)
@pytest.mark.parametrize("shape", [(480,), (480, 1), (0,), (1,)])
def test_mono_output_is_1d(
    runtime: str, node_type: str, params: dict[str, Any], shape: tuple[int, ...]
) -> None:
    if node_type == "ChannelMixNode" and params.get("channel"):
        params = {"mode": "select", "channel": 0}  # mono audio has no channel 1
    samples = np.linspace(-0.5, 0.5, int(np.prod(shape)), dtype=np.float32).reshape(shape)
    audio = rm.AudioBuffer.from_numpy(samples, 48000)
    out = node(node_type, runtime, **params).execute(audio)
    assert out.channels == 1
    assert out.to_numpy().ndim == 1
    assert out.to_numpy().shape == (out.num_frames,)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize(("node_type", "params"), AUDIO_NODES)
def test_stereo_output_is_frames_by_channels(
    runtime: str, node_type: str, params: dict[str, Any]
) -> None:
    audio = rm.AudioBuffer.from_numpy(np.zeros((480, 2), np.float32), 48000)
    out = node(node_type, runtime, **params).execute(audio)
    expected = (out.num_frames,) if out.channels == 1 else (out.num_frames, 2)
    assert out.to_numpy().shape == expected
    assert (out.channels == 1) == (node_type == "ChannelMixNode")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mono_output_through_a_pipeline_is_1d(runtime: str) -> None:
    manifest = {
        "version": "v1",
        "nodes": [
            {"id": "mono", "node_type": "ChannelMixNode"},
            {"id": "rate", "node_type": "ResampleNode", "params": {"target_rate": 16000}},
            {"id": "pcm", "node_type": "FormatConverterNode", "params": {"target_format": "i16"}},
        ],
        "connections": [{"from": "mono", "to": "rate"}, {"from": "rate", "to": "pcm"}],
    }
    stereo = rm.AudioBuffer.from_numpy(np.zeros((4800, 2), np.float32), 48000)
    with rm.Pipeline(manifest, runtime="local", node_runtime=runtime) as pipeline:
        out = pipeline.run(stereo)["pcm"]
    assert out.to_numpy().shape == (1600,)
    assert out.to_numpy().dtype == np.int16


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_kernel_parameter_error_is_a_config_error_naming_node_and_parameter(
    runtime: str,
) -> None:
    manifest = {
        "version": "v1",
        "nodes": [{"id": "r", "node_type": "ResampleNode", "params": {"target_rate": 48001}}],
        "connections": [],
    }
    audio = rm.AudioBuffer.from_numpy(np.zeros(441, np.float32), 44100)
    with (
        rm.Pipeline(manifest, runtime="local", node_runtime=runtime) as pipeline,
        pytest.raises(rm.ConfigError) as info,
    ):
        pipeline.run(audio, item_id="clip")
    text = str(info.value)
    assert text.startswith("[node 'r', item 'clip'] ")
    assert "target_rate 48001" in text
    assert text.count("'r'") == 1
    assert info.value.node_id == "r"
    assert not isinstance(info.value, rm.AudioFormatError)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_selecting_a_missing_channel_is_a_config_error(runtime: str) -> None:
    audio = rm.AudioBuffer.from_numpy(np.zeros((10, 2), np.float32), 16000)
    with pytest.raises(rm.ConfigError, match=r"^\[node 'n'\] [^\[]*channel 5") as info:
        node("ChannelMixNode", runtime, mode="select", channel=5).execute(audio)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_bad_audio_is_still_an_audio_format_error(runtime: str) -> None:
    audio = rm.AudioBuffer.from_numpy(np.array([0.0, np.nan], np.float32), 16000)
    with pytest.raises(rm.AudioFormatError, match=r"^\[node 'n'\] non-finite sample \(nan\)"):
        node("FormatConverterNode", runtime, target_format="i16").execute(audio)


def test_an_initialize_failure_names_the_node_once() -> None:
    @rm.register_node("FailsToInitialize")
    class FailsToInitialize(rm.NodeExecutor):
        def initialize(self, params: Any) -> None:
            raise OSError("model file missing")

        def execute(self, input: Any) -> Any:
            return input

    manifest = {
        "version": "v1",
        "nodes": [{"id": "m", "node_type": "FailsToInitialize"}],
        "connections": [],
    }
    with pytest.raises(rm.NodeExecutionError) as info:
        rm.Pipeline(manifest, runtime="local").open()
    text = str(info.value)
    assert text.count("'m'") == 1, text
    assert "FailsToInitialize failed to initialize: OSError: model file missing" in text
