"""Executors: the in-process local runtime, the Ray runtime, and the retry policy."""
