"""The dataset job: inputs, keys, readers, writers and storage of `remotemedia-ray run`.

One module per step: :mod:`~remotemedia_ray.dataset.inputs` lists inputs,
:mod:`~remotemedia_ray.dataset.keys` gives resume keys,
:mod:`~remotemedia_ray.dataset.readers` decodes inputs in the workers (the
job's internal nodes), :mod:`~remotemedia_ray.dataset.writers` writes
outputs, :mod:`~remotemedia_ray.dataset.outdir` locks and prepares OUTDIR,
:mod:`~remotemedia_ray.dataset.progress` shows progress and
:mod:`~remotemedia_ray.dataset.job` runs it all (:func:`run_job`).
"""

from remotemedia_ray.dataset.inputs import InputItem, audio_extensions, list_inputs
from remotemedia_ray.dataset.job import DatasetJob, JobConfig, JobResult, run_job
from remotemedia_ray.dataset.keys import content_key, row_key
from remotemedia_ray.dataset.readers import FileChunks, decode_audio
from remotemedia_ray.dataset.writers import ShardWriter, safe_relative_path, sink_table

__all__ = [
    "DatasetJob",
    "FileChunks",
    "InputItem",
    "JobConfig",
    "JobResult",
    "ShardWriter",
    "audio_extensions",
    "content_key",
    "decode_audio",
    "list_inputs",
    "row_key",
    "run_job",
    "safe_relative_path",
    "sink_table",
]
