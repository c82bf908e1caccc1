"""What writing a shard of int16 speech to Parquet costs, per setting.

    python -m benchmarks.output_cost [--rows 64]

One shard as the job writes it (``--rows`` items of 10 s, 16 kHz mono int16
speech-like audio, :func:`remotemedia_ray.columns.sink_table`), written to
memory and read back with each setting, in this one process, best of three.
Sizes are relative to the raw samples (Parquet stores int16 as INT32: plain
encoding doubles them; the dictionary's bit-packing halves that again).
The job uses :data:`remotemedia_ray.dataset.writers.PARQUET_OPTIONS`.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import remotemedia_ray as rm
from benchmarks.suites._common import speech_like
from remotemedia_ray.columns import sink_table
from remotemedia_ray.dataset.writers import PARQUET_OPTIONS

SETTINGS: dict[str, dict[str, Any]] = {
    "pyarrow default (snappy, dictionary)": {},
    "none, dictionary": {"compression": "none"},
    "none, plain": {"compression": "none", "use_dictionary": False},
    "zstd 1, plain": {"compression": "zstd", "compression_level": 1, "use_dictionary": False},
    "zstd 1, byte-stream-split": {
        "compression": "zstd",
        "compression_level": 1,
        "use_dictionary": False,
        "use_byte_stream_split": ["audio.list.element"],
    },
    "zstd 1, dictionary (the job's)": PARQUET_OPTIONS,
    "zstd 3, dictionary": {"compression": "zstd", "compression_level": 3},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=64, help="items in the shard (64)")
    args = parser.parse_args(argv)
    rows = [
        (
            f"f{i}",
            rm.AudioBuffer.from_numpy(
                (speech_like(16000, 10.0, 1, seed=i) * 32767).astype(np.int16), 16000
            ),
        )
        for i in range(args.rows)
    ]
    table = sink_table(rows)
    raw = sum(buffer.num_frames * 2 for _, buffer in rows)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rows} x 10 s of 16 kHz int16")
    print(f"{'setting':<38} {'size':>6} {'write MB/s':>11} {'read MB/s':>10}")
    for name, options in SETTINGS.items():
        write = read = float("inf")
        for _ in range(3):
            sink = pa.BufferOutputStream()
            start = time.perf_counter()
            pq.write_table(table, sink, **options)
            write = min(write, time.perf_counter() - start)
            data = sink.getvalue()
            start = time.perf_counter()
            pq.read_table(pa.BufferReader(data))
            read = min(read, time.perf_counter() - start)
        print(
            f"{name:<38} {data.size / raw:6.3f} {raw / write / 1e6:11.0f} {raw / read / 1e6:10.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
