"""The dataset job: inputs, keys, readers, writers and storage of `remotemedia-ray run`.

One module per step: :mod:`~remotemedia_ray.dataset.inputs` lists inputs,
:mod:`~remotemedia_ray.dataset.keys` gives resume keys,
:mod:`~remotemedia_ray.dataset.codecs` decodes audio (libsndfile or FFmpeg),
:mod:`~remotemedia_ray.dataset.readers` reads inputs in the workers (the
job's internal nodes), :mod:`~remotemedia_ray.dataset.writers` writes
outputs (in the workers) in the formats of
:mod:`~remotemedia_ray.dataset.formats`, naming and encoding audio files as
:mod:`~remotemedia_ray.dataset.audiofiles` says,
:mod:`~remotemedia_ray.dataset.donelog` records what is finished,
:mod:`~remotemedia_ray.dataset.storage` resolves local paths and storage URIs,
:mod:`~remotemedia_ray.dataset.outdir` locks and prepares OUTDIR,
:mod:`~remotemedia_ray.dataset.progress` shows progress and
:mod:`~remotemedia_ray.dataset.job` runs it all (:func:`run_job`).
"""

from remotemedia_ray.dataset.audiofiles import audio_path, safe_relative_path
from remotemedia_ray.dataset.codecs import decode_audio
from remotemedia_ray.dataset.formats import FORMATS, ShardSize
from remotemedia_ray.dataset.inputs import InputItem, audio_extensions, list_inputs
from remotemedia_ray.dataset.job import DatasetJob, JobConfig, JobResult, plan_job, run_job
from remotemedia_ray.dataset.keys import content_key, row_key
from remotemedia_ray.dataset.readers import FileChunks
from remotemedia_ray.dataset.storage import Location, redact, resolve
from remotemedia_ray.dataset.writers import BatchCommit, OutputWriter

__all__ = [
    "FORMATS",
    "BatchCommit",
    "DatasetJob",
    "FileChunks",
    "InputItem",
    "JobConfig",
    "JobResult",
    "Location",
    "OutputWriter",
    "ShardSize",
    "audio_extensions",
    "audio_path",
    "content_key",
    "decode_audio",
    "list_inputs",
    "plan_job",
    "redact",
    "resolve",
    "row_key",
    "run_job",
    "safe_relative_path",
]
