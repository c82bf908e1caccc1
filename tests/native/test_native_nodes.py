"""Native nodes: zero-copy in and out (structural proof), robustness, errors."""

from __future__ import annotations

import numpy as np
import pytest

import remotemedia_ray as rm
from remotemedia_ray.nodes import native
from remotemedia_ray.nodes.reference import VadSettings

pytestmark = pytest.mark.skipif(not rm.native_available(), reason="native extension not built")

NAT = native.NativeKernels()


def ext():  # type: ignore[no-untyped-def]
    return native.native_module()


def hooks():  # type: ignore[no-untyped-def]
    """The development build's test hooks (`make build` enables the test-hooks feature)."""
    return native.native_module()._testing


def test_test_hooks_stay_out_of_the_public_module() -> None:
    public = set(ext().__all__)
    assert not {"input_address", "panic_in_kernel", "_testing"} & public
    assert not hasattr(ext(), "input_address") and not hasattr(ext(), "panic_in_kernel")


def arrow_backed(samples: np.ndarray, rate: int = 16000) -> rm.AudioBuffer:
    """A buffer viewing one row of a batch table, as Ray hands it to an actor."""
    table = rm.audio_table(["a", "b"], [rm.AudioBuffer.from_numpy(samples, rate)] * 2)
    return rm.AudioBuffer.from_table_row(table, 1)


def test_kernels_read_arrow_memory_in_place() -> None:
    x = np.linspace(-1, 1, 4000, dtype=np.float32).reshape(-1, 2)
    buf = arrow_backed(x)
    view = buf.to_numpy()
    assert not view.flags.writeable
    assert view.ctypes.data == buf.to_arrow().buffers()[1].address + buf.to_arrow().offset * 4
    # The very pointer the kernels read is the Arrow memory: no copy on the way in.
    assert native._kernel_input(view) is view
    assert hooks().input_address(native._kernel_input(view)) == view.ctypes.data


def test_two_consumers_see_the_same_memory() -> None:
    x = np.ones((1000, 1), np.int16)
    table = rm.audio_table(["a"], [rm.AudioBuffer.from_numpy(x, 8000)])
    first = rm.AudioBuffer.from_table_row(table, 0).to_numpy_2d()
    second = rm.AudioBuffer.from_table_row(table, 0).to_numpy_2d()
    assert hooks().input_address(first) == hooks().input_address(second)


def test_native_output_becomes_arrow_without_a_copy() -> None:
    x = np.linspace(-1, 1, 960, dtype=np.float32).reshape(-1, 2)
    out = NAT.convert_format(x, rm.AudioFormat.I16)
    assert type(out.base).__name__ == "PySliceContainer"  # numpy owns the Rust Vec
    assert not out.flags.owndata and out.flags.c_contiguous
    buf = rm.AudioBuffer.from_numpy(out, 48000)
    assert buf.to_arrow().buffers()[1].address == out.ctypes.data


def test_node_output_shares_memory_with_the_kernel_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    produced: list[np.ndarray] = []
    original = native.NativeKernels.convert_format

    def recording(samples: np.ndarray, target: rm.AudioFormat) -> np.ndarray:
        out = original(samples, target)
        produced.append(out)
        return out

    monkeypatch.setattr(native.NativeKernels, "convert_format", staticmethod(recording))
    node = rm.create_node("FormatConverterNode", runtime="rust_native")
    node.initialize({"target_format": "f64"})
    out = node.execute(arrow_backed(np.zeros((10, 1), np.float32)))
    (kernel_out,) = produced
    assert type(kernel_out.base).__name__ == "PySliceContainer"
    assert out.to_arrow().buffers()[1].address == kernel_out.ctypes.data
    assert out.format is rm.AudioFormat.F64


def test_misaligned_and_non_contiguous_input_give_correct_results() -> None:
    raw = np.zeros(4 * 101 + 1, np.uint8)
    misaligned = np.frombuffer(raw.data, dtype=np.float32, count=100, offset=1).reshape(50, 2)
    assert not misaligned.flags.aligned
    ref = rm.nodes.reference.convert_format(misaligned, rm.AudioFormat.I16)
    assert np.array_equal(NAT.convert_format(misaligned, rm.AudioFormat.I16), ref)
    x = np.arange(40, dtype=np.float64).reshape(10, 4) / 64
    for view in (x[:, ::2], x.T.copy().T, x[::3]):
        assert np.array_equal(
            NAT.channel_mix(view, "mean"), rm.nodes.reference.channel_mix(view, "mean")
        )


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.complex64, np.float16, ">f4"])
def test_wrong_dtypes_are_audio_format_errors(dtype: object) -> None:
    x = np.zeros((10, 1), dtype=dtype)  # type: ignore[call-overload]
    with pytest.raises(rm.AudioFormatError):
        NAT.convert_format(x, rm.AudioFormat.F32)
    with pytest.raises(rm.AudioFormatError):
        NAT.vad_segments(x, 16000)


def test_wrong_shapes_and_channels_are_clear_errors() -> None:
    with pytest.raises(rm.AudioFormatError, match="2-D"):
        NAT.channel_mix(np.zeros(10, np.float32), "mean")
    with pytest.raises(rm.MarshalingError):
        NAT.vad_segments([0.0, 1.0], 16000)  # type: ignore[arg-type]
    with pytest.raises(rm.AudioFormatError, match="shape"):
        NAT.combine([np.zeros((10, 2), np.float32), np.zeros((10, 1), np.float32)], "add", 0)
    with pytest.raises(rm.ConfigError, match="channel 3"):
        NAT.channel_mix(np.zeros((10, 2), np.int16), "select", 3)


def test_absurd_parameters_do_not_crash() -> None:
    x = np.ones((1000, 3), np.float32) * 0.5
    segs = NAT.vad_segments(x, 16000, VadSettings(frame_length_ms=1e12))
    assert len(segs) == 1 and segs[0]["end_ms"] == pytest.approx(62.5)
    assert NAT.vad_segments(x, 2**31 - 1, VadSettings(frame_length_ms=1e-9))
    with pytest.raises(rm.AudioFormatError, match="sample_rate"):
        NAT.vad_segments(x, 2**40)
    with pytest.raises(rm.ConfigError, match="target_format"):
        ext().convert_format(x, "u8")


def test_rust_panic_becomes_node_execution_error_and_process_lives() -> None:
    with pytest.raises(
        rm.NodeExecutionError, match="native kernel panicked: deliberate test panic"
    ):
        hooks().panic_in_kernel()
    # The process and the extension still work.
    assert NAT.vad_segments(np.ones((160, 1), np.float32), 16000)


def test_native_node_errors_carry_the_node_id() -> None:
    manifest = {
        "version": "v1",
        "metadata": {"name": "bad"},
        "nodes": [
            {
                "id": "to16",
                "node_type": "FormatConverterNode",
                "params": {"target_format": "i16"},
                "runtime_hint": "rust_native",
            }
        ],
        "connections": [],
    }
    bad = rm.AudioBuffer.from_numpy(np.array([0.1, np.nan, 0.2], np.float32), 16000)
    with rm.Pipeline(manifest, runtime="local") as p, pytest.raises(rm.AudioFormatError) as info:
        p.run(bad, item_id="clip")
    assert info.value.node_id == "to16" and info.value.item_id == "clip"
    assert "index 1 (frame 1, channel 0)" in str(info.value)


def test_the_extension_refuses_misaligned_memory_itself() -> None:
    raw = np.zeros(4 * 11 + 1, np.uint8)
    misaligned = np.frombuffer(raw.data, dtype=np.float32, count=10, offset=1).reshape(10, 1)
    with pytest.raises(rm.AudioFormatError, match="aligned"):
        ext().convert_format(misaligned, "i16")
