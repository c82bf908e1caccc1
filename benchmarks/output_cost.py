"""What writing a shard of int16 speech to Parquet costs, per setting.

    python -m benchmarks.output_cost [--rows 64]

One shard (``--rows`` items of 10 s, 16 kHz mono int16 speech-like audio,
:func:`remotemedia_ray.columns.sink_table`), written to memory and read back
with each setting, in this one process, best of three, in two layouts: the
audio as a list of samples (the in-memory layout), and as each row's bytes
beside ``sample_format`` (:func:`remotemedia_ray.columns.stored_table`, what
the job writes). Sizes are relative to the raw samples (Parquet stores int16
as INT32: a plain list doubles them; the dictionary's bit-packing halves that
again). A list costs a repetition level per sample, which is what makes it
slow. The job uses :func:`remotemedia_ray.dataset.writers.parquet_options`.
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
from remotemedia_ray.columns import sink_table, stored_table
from remotemedia_ray.dataset.writers import parquet_options

LIST_SETTINGS: dict[str, dict[str, Any]] = {
    "list: pyarrow default (snappy, dict)": {},
    "list: none, plain": {"compression": "none", "use_dictionary": False},
    "list: zstd 1, plain": {"compression": "zstd", "compression_level": 1, "use_dictionary": False},
    "list: zstd 1, byte-stream-split": {
        "compression": "zstd",
        "compression_level": 1,
        "use_dictionary": False,
        "use_byte_stream_split": ["audio.list.element"],
    },
    "list: zstd 1, dictionary": {"compression": "zstd", "compression_level": 1},
}
BYTES_SETTINGS: dict[str, dict[str, Any]] = {
    "bytes: none": {"compression": "none", "use_dictionary": False},
    "bytes: lz4": {"compression": "lz4", "use_dictionary": False},
    "bytes: snappy": {"compression": "snappy", "use_dictionary": False},
    "bytes: zstd 3": {"compression": "zstd", "compression_level": 3, "use_dictionary": False},
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
    stored = stored_table(table)
    raw = sum(buffer.num_frames * 2 for _, buffer in rows)
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rows} x 10 s of 16 kHz int16")
    print(f"{'setting':<38} {'size':>6} {'write MB/s':>11} {'read MB/s':>10}")
    runs = [
        *((name, table, options) for name, options in LIST_SETTINGS.items()),
        *((name, stored, options) for name, options in BYTES_SETTINGS.items()),
        ("bytes: zstd 1 (the job's)", stored, parquet_options(stored)),
    ]
    for name, shard, options in runs:
        write = read = float("inf")
        for _ in range(3):
            sink = pa.BufferOutputStream()
            start = time.perf_counter()
            pq.write_table(shard, sink, **options)
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
