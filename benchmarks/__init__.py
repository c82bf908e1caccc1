"""The project's benchmarks, one importable package with one set of helpers.

Run a comparison from the repository root as a module, so that its imports
resolve the same way for everyone (scripts, tests and asv)::

    python -m benchmarks.compare_peers     # the dataset job vs Ray Data + soxr and plain loops
    python -m benchmarks.compare_nodes     # native nodes vs their numpy twins and peers
    python -m benchmarks.compare_runtime   # local vs Ray runtime, fused and unfused
    python -m benchmarks.decode_speed      # libsndfile vs FFmpeg per codec
    python -m benchmarks.vad_accuracy      # VAD accuracy against labelled speech
    python -m benchmarks.check_dashboard   # the asv dashboard in a headless browser

:mod:`benchmarks.suites` holds the asv suites; :mod:`benchmarks.suites._common`
the helpers every benchmark shares (timing loops, signal generators, Ray).
"""
