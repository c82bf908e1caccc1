"""Native nodes vs the numpy reference vs the peers users would reach for.

    python -m benchmarks.compare_nodes [--quick]

Everything runs in this one process, on one core, on the same data; each
figure is the best of several repeats (these machines are noisy, so compare
the ratios rather than the absolute times). Peers: python-soxr ``HQ`` for
resampling, webrtcvad (mode 2, 30 ms frames) for VAD, plain numpy for format
conversion and arithmetic.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

import remotemedia_ray as rm
from benchmarks.suites._common import best_seconds, speech_like, tone_noise
from remotemedia_ray.nodes import native, reference, resampling
from remotemedia_ray.nodes.resampling import ResampleSettings


@dataclass
class Row:
    """One measured implementation of one task."""

    task: str
    name: str
    seconds: float
    audio_seconds: float
    samples: int

    @property
    def realtime(self) -> float:
        return self.audio_seconds / self.seconds

    @property
    def msamples_per_s(self) -> float:
        return self.samples / self.seconds / 1e6


ROWS: list[Row] = []
RATIOS: list[tuple[str, float, str]] = []


def measure(
    task: str, name: str, fn: Callable[[], object], audio_s: float, samples: int, repeat: int
) -> Row:
    row = Row(task, name, best_seconds(fn, repeat=repeat, min_time=0.05), audio_s, samples)
    ROWS.append(row)
    print(
        f"  {name:<28} {row.seconds * 1e3:10.3f} ms  {row.msamples_per_s:9.1f} Msamples/s  "
        f"{row.realtime:10.0f}x realtime",
        flush=True,
    )
    return row


def ratio(label: str, fast: Row, slow: Row, target: str) -> None:
    value = slow.seconds / fast.seconds
    RATIOS.append((label, value, target))
    print(f"  -> {label}: {value:.2f}x (target {target})", flush=True)


def bench_resample(repeat: int, seconds: float) -> None:
    import soxr

    nat = native.NativeKernels()
    for src, dst in [(48000, 16000), (44100, 16000), (16000, 48000)]:
        for channels in (1, 2):
            x = tone_noise(src, seconds, channels)
            flat = x[:, 0].copy() if channels == 1 else x
            task = f"resample high {src}->{dst} {channels}ch"
            print(f"{task} ({seconds:g} s)")
            n = x.size
            r_nat = measure(
                task,
                "native",
                partial(nat.resample, x, src, ResampleSettings(dst, "high")),
                seconds,
                n,
                repeat,
            )
            r_sox = measure(
                task,
                "soxr HQ",
                partial(soxr.resample, flat, src, dst, quality="HQ"),
                seconds,
                n,
                repeat,
            )
            if channels == 1 and src != 16000:
                r_ref = measure(
                    task,
                    "numpy reference",
                    partial(resampling.resample, x, src, ResampleSettings(dst, "high")),
                    seconds,
                    n,
                    max(2, repeat // 3),
                )
                ratio(f"{task}: native / numpy", r_nat, r_ref, "-")
            ratio(f"{task}: native / soxr HQ", r_nat, r_sox, ">= 1.0")


def bench_vad(repeat: int, seconds: float) -> None:
    import webrtcvad

    rate = 16000
    x = speech_like(rate, seconds)
    pcm = (x[:, 0] * 32767).astype(np.int16)
    frame = rate * 30 // 1000
    frames = [pcm[i : i + frame].tobytes() for i in range(0, pcm.size - frame + 1, frame)]
    vad = webrtcvad.Vad(2)
    nat = native.NativeKernels()
    task = "VAD 16 kHz mono"
    print(f"{task} ({seconds:g} s)")
    r_nat = measure(
        task, "native (f32)", lambda: nat.vad_segments(x, rate), seconds, x.size, repeat
    )
    xi16 = pcm.reshape(-1, 1)
    measure(task, "native (i16)", lambda: nat.vad_segments(xi16, rate), seconds, x.size, repeat)
    r_ref = measure(
        task, "numpy reference", lambda: reference.vad_segments(x, rate), seconds, x.size, repeat
    )
    r_web = measure(
        task,
        "webrtcvad mode 2",
        lambda: [vad.is_speech(f, rate) for f in frames],
        seconds,
        x.size,
        repeat,
    )
    ratio(f"{task}: native / webrtcvad", r_nat, r_web, ">= 10")
    ratio(f"{task}: native / numpy", r_nat, r_ref, "-")


def bench_convert(repeat: int, seconds: float) -> None:
    x = tone_noise(48000, seconds, 2)
    nat = native.NativeKernels()
    task = "FormatConverter f32->i16 48 kHz stereo"
    print(f"{task} ({seconds:g} s)")
    r_nat = measure(
        task, "native", lambda: nat.convert_format(x, rm.AudioFormat.I16), seconds, x.size, repeat
    )
    r_np = measure(
        task,
        "numpy rint(clip(x*32768))",
        lambda: np.rint(np.clip(x * 32768, -32768, 32767)).astype(np.int16),
        seconds,
        x.size,
        repeat,
    )
    r_ref = measure(
        task,
        "numpy reference",
        lambda: reference.convert_format(x, rm.AudioFormat.I16),
        seconds,
        x.size,
        repeat,
    )
    ratio(f"{task}: native / numpy expression", r_nat, r_np, ">= 4")
    ratio(f"{task}: native / numpy reference", r_nat, r_ref, "-")


def bench_arith(repeat: int, seconds: float) -> None:
    x = tone_noise(48000, seconds, 2)
    y = tone_noise(48000, seconds, 2, seed=5)
    nat = native.NativeKernels()
    factor = np.float32(0.5)
    for task, fn_nat, fn_np in [
        (
            "Multiply f32 48 kHz stereo",
            lambda: nat.combine([x], "multiply", 0.5),
            lambda: x * factor,
        ),
        (
            "Add f32 48 kHz stereo",
            lambda: nat.combine([x], "add", 0.25),
            lambda: x + np.float32(0.25),
        ),
        (
            "Add (mix of 2) f32 48 kHz stereo",
            lambda: nat.combine([x, y], "add", 0.0),
            lambda: x + y,
        ),
    ]:
        print(f"{task} ({seconds:g} s)")
        r_nat = measure(task, "native", fn_nat, seconds, x.size, repeat)
        r_np = measure(task, "numpy", fn_np, seconds, x.size, repeat)
        ratio(f"{task}: native / numpy", r_nat, r_np, ">= 1.0")
    task = "ChannelMix mean 48 kHz stereo"
    print(f"{task} ({seconds:g} s)")
    r_nat = measure(task, "native", lambda: nat.channel_mix(x, "mean"), seconds, x.size, repeat)
    r_np = measure(
        task,
        "numpy x.mean(axis=1)",
        lambda: x.mean(axis=1, dtype=np.float32),
        seconds,
        x.size,
        repeat,
    )
    ratio(f"{task}: native / numpy", r_nat, r_np, "-")


def bench_overhead(repeat: int) -> None:
    """Time of one native node execute() on 10 ms of audio minus the bare kernel's."""
    x = tone_noise(48000, 0.01, 2)
    buf = rm.AudioBuffer.from_numpy(x, 48000)
    ext = native.native_module()
    print("Overhead of one native execute() on a 10 ms buffer (48 kHz stereo)")
    cases = [
        ("MultiplyNode", {"factor": 0.5}, lambda: ext.combine([x], "multiply", 0.5)),
        ("FormatConverterNode", {"target_format": "i16"}, lambda: ext.convert_format(x, "i16")),
        ("ChannelMixNode", {}, lambda: ext.channel_mix(x, "mean", 0)),
    ]
    for node_type, params, kernel in cases:
        node = rm.create_node(node_type, runtime="rust_native")
        node.initialize(params)
        t_node = best_seconds(lambda node=node: node.execute(buf), repeat=repeat, min_time=0.05)
        t_kernel = best_seconds(kernel, repeat=repeat, min_time=0.05)
        overhead_us = (t_node - t_kernel) * 1e6
        RATIOS.append((f"{node_type} execute overhead (us)", overhead_us, "<= 5 us"))
        print(
            f"  {node_type:<22} execute {t_node * 1e6:7.2f} us, kernel {t_kernel * 1e6:7.2f} us,"
            f" overhead {overhead_us:5.2f} us (target <= 5 us)",
            flush=True,
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter audio")
    args = parser.parse_args(argv)
    if not rm.native_available():
        print("the native extension is not built; run `make build`", file=sys.stderr)
        return 1
    if native.native_build_profile() != "release":
        print("refusing to benchmark a debug build of the extension", file=sys.stderr)
        return 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    repeat, seconds = (3, 2.0) if args.quick else (7, 10.0)
    bench_resample(repeat, seconds)
    bench_vad(repeat, seconds)
    bench_convert(repeat, seconds)
    bench_arith(repeat, seconds)
    bench_overhead(repeat)
    print("\nSummary (ratios: how many times faster the native node is)")
    for label, value, target in RATIOS:
        print(f"  {label:<64} {value:8.2f}   target {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
