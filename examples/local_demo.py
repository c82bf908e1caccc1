"""Run the speech-prep manifest over the example audio, in this process.

    python examples/local_demo.py [MANIFEST] [AUDIO ...]

Prints each file's speech segments and output audio, then the metrics summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import soundfile as sf

import remotemedia_ray as rm

HERE = Path(__file__).resolve().parent


def load(path: Path) -> rm.AudioBuffer:
    """Decode an audio file into an AudioBuffer (frames, channels)."""
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    return rm.AudioBuffer.from_numpy(samples, rate)


def main(argv: list[str]) -> int:
    manifest = Path(argv[0]) if argv else HERE / "speech_prep.json"
    files = [Path(a) for a in argv[1:]] or sorted((HERE / "audio").glob("*.*"))
    with rm.Pipeline(manifest, runtime="local") as pipeline:
        for path, result in zip(
            files, pipeline.map((load(f) for f in files), ids=(f.name for f in files)), strict=True
        ):
            audio = load(path)
            print(
                f"{path.name}: {audio.duration_seconds:.2f} s, {audio.sample_rate} Hz, "
                f"{audio.channels} ch"
            )
            for sink, output in result.items():
                if isinstance(output, rm.AudioBuffer):
                    print(f"  {sink}: {output}")
                elif isinstance(output, list):
                    print(f"  {sink}: {len(output)} segment(s)")
                    for seg in output:
                        print(
                            f"    {seg['start_ms']:8.1f} - {seg['end_ms']:8.1f} ms  "
                            f"{seg['energy_db']:6.1f} dB  confidence {seg['confidence']:.2f}"
                        )
                else:
                    print(f"  {sink}: {output!r}")
        print(pipeline.metrics.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
