"""Decode speed per codec: libsndfile vs FFmpeg (PyAV), x realtime per core.

    python -m benchmarks.decode_speed [--quick]

Each format is encoded once (60 s of stereo audio; 10 s with ``--quick``) and
decoded from memory by both decoders where both can read it, in this one
process, best of several repeats of CPU time. The last column says which
decoder the job uses for that format (:data:`remotemedia_ray.dataset.codecs.
FFMPEG_FASTER`) and whether that is the faster one; a format only FFmpeg
reads shows one figure. A canonical PCM WAV needs neither: the job reads its
samples in place (a view of the file's bytes), shown on a line of its own.
Compare the ratios, not the absolute figures (these machines are noisy).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import soundfile as sf

from benchmarks.suites._common import encode, tone_noise
from remotemedia_ray.dataset.codecs import Probe, decode_audio, probe

FORMATS = ("wav", "flac", "vorbis", "mp3", "opus", "m4a", "webm")


def corpus(seconds: float) -> dict[str, bytes]:
    """Each format's file of the same audio (48 kHz stereo)."""
    rate = 48000
    x = tone_noise(rate, seconds, 2)
    files: dict[str, bytes] = {}
    for fmt, subtype in (("wav", "PCM_16"), ("flac", "PCM_16")):
        out = io.BytesIO()
        sf.write(out, x, rate, format=fmt.upper(), subtype=subtype)
        files[fmt] = out.getvalue()
    out = io.BytesIO()
    with sf.SoundFile(out, "w", rate, 2, format="OGG", subtype="VORBIS") as handle:
        for start in range(0, len(x), 8192):  # libsndfile's Vorbis encoder needs small writes
            handle.write(x[start : start + 8192])
    files["vorbis"] = out.getvalue()
    for ext in ("mp3", "opus", "m4a", "webm"):
        files[ext] = encode(x, rate, ext)
    return files


def cpu_seconds(data: bytes, found: Probe, repeat: int) -> float:
    """Best CPU time of ``repeat`` whole decodes by ``found.decoder`` (libsndfile itself,
    even for a WAV the job reads in place)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        if found.decoder == "sndfile":
            sf.read(io.BytesIO(data), dtype=found.dtype, always_2d=True)
        else:
            decode_audio(data, "bench", probed=found)
        best = min(best, time.process_time() - start)
    return best


def in_place_seconds(data: bytes, repeat: int) -> float:
    """Best CPU time of ``repeat`` reads as the job reads a PCM WAV (in place)."""
    best = float("inf")
    for _ in range(repeat * 20):
        start = time.process_time()
        decode_audio(data, "bench")
        best = min(best, time.process_time() - start)
    return max(best, 1e-7)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s of audio, fewer repeats")
    args = parser.parse_args(argv)
    seconds, repeat = (10.0, 2) if args.quick else (60.0, 5)
    print(f"load average {os.getloadavg()[0]:.2f}; {seconds:.0f} s of 48 kHz stereo per format")
    print(f"{'format':<8} {'libsndfile':>12} {'FFmpeg':>12} {'ratio':>7}  used")
    misses = 0
    for fmt, data in corpus(seconds).items():
        chosen = probe(data, fmt)
        speeds: dict[str, float] = {}
        for decoder in ("sndfile", "ffmpeg"):
            found = dataclasses.replace(chosen, decoder=decoder)
            try:
                speeds[decoder] = seconds / cpu_seconds(data, found, repeat)
            except Exception:  # this decoder cannot read the format
                continue
        cells = [
            f"{speeds[d]:11.0f}x" if d in speeds else f"{'-':>12}" for d in ("sndfile", "ffmpeg")
        ]
        faster = max(speeds, key=lambda d: speeds[d])
        ratio = f"{speeds['ffmpeg'] / speeds['sndfile']:6.2f}x" if len(speeds) == 2 else f"{'-':>7}"
        note = chosen.decoder if chosen.decoder == faster else f"{chosen.decoder} (slower)"
        misses += chosen.decoder != faster
        print(f"{fmt:<8} {cells[0]} {cells[1]} {ratio}  {note}")
        if fmt == "wav":
            speed = seconds / in_place_seconds(data, repeat)
            print(f"{'':<8} {'':>12} {'':>12} {'':>7}  in place, the job's: {speed:.0f}x")
    print(f"ratio = FFmpeg / libsndfile speed. {misses} format(s) decoded by the slower decoder.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
