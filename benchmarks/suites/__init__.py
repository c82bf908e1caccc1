"""The asv benchmark suites of remotemedia_ray (configuration: ``benchmarks/asv.conf.json``).

* :mod:`nodes` -- every built-in node's ``execute()`` per runtime (``time_*``,
  ``peakmem_*``) and how many times faster the Rust node is than its numpy twin
  and than the peer a user would reach for (``track_speedup_*``);
* :mod:`pipelines` -- the example manifests streamed through the local runtime
  and through an embedded Ray (``time_*``, ``track_realtime_factor``);
* :mod:`transfer` -- batch tables of 1 KB .. 100 MB handed to Ray actors.

Run them with ``make bench`` (a quick pass over the current checkout, then the
HTML dashboard), ``make bench-history N=...`` or ``make bench-smoke``; asv runs
every benchmark in its own process (``--launch-method=spawn``: Ray does not
survive ``fork``).
"""
