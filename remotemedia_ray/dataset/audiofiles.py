"""Audio files the job writes: where each goes and its bytes.

``--write-audio`` files and the training-ready formats' audio are named from
the item (or clip) id alone, so every worker names them the same and two
inputs never share a file; they are FLAC or WAV, keeping integer PCM's width.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import PurePosixPath

from remotemedia_ray.audio import AudioBuffer, AudioFormat
from remotemedia_ray.errors import AudioFormatError

__all__ = ["audio_folder", "audio_path", "encode_audio", "safe_relative_path"]


def audio_folder(sink: str) -> str:
    """The folder (relative to OUTDIR) of ``sink``'s ``--write-audio`` files."""
    return f"{sink}.audio"


_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]")


def safe_relative_path(item_id: str) -> PurePosixPath:
    """A relative output path for an item id that cannot leave the output directory.

    Absolute paths lose their root, ``..`` and ``.`` components are dropped,
    and characters outside ``[A-Za-z0-9._-]`` become ``_``.
    """
    parts = []
    for part in PurePosixPath(item_id.replace("\\", "/")).parts:
        if part in ("/", "", ".", ".."):
            continue
        cleaned = _UNSAFE.sub("_", part).lstrip(".") or "_"
        parts.append(cleaned)
    if not parts:
        parts = ["_"]
    return PurePosixPath(*parts)


def audio_path(item_id: str, fmt: str) -> PurePosixPath:
    """Where ``--write-audio`` puts an item's audio, relative to ``<sink>.audio/``.

    The item's path with the format's suffix added (``a/x.wav`` -> ``a/x.wav.flac``),
    decided by the item alone, so every worker names it the same, and two
    inputs never share an output (``x.wav`` and ``x.flac`` give ``x.wav.flac``
    and ``x.flac.flac``). An id that is not already a safe relative path
    (see :func:`safe_relative_path`: an absolute path, ``..``, unusual
    characters) is made one and gets a digest of the id, so ids that clean
    up alike stay apart (``a b.wav`` -> ``a_b.wav-<digest>.flac``).
    """
    rel = safe_relative_path(item_id)
    name = rel.name
    if rel.as_posix() != item_id:
        name += (
            "-"
            + hashlib.blake2b(item_id.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
        )
    return rel.with_name(f"{name}.{fmt}")


_LIMITS = {"flac": (8, 655_350), "wav": (1024, 2**31 - 1)}
"""(channels, sample rate) at most, per format, as libsndfile writes them."""


def encode_audio(audio: AudioBuffer, fmt: str) -> bytes:
    """``audio`` as the bytes of a FLAC or WAV file.

    Integer PCM keeps its width (32-bit becomes 24-bit in FLAC, its widest);
    float audio is stored as float in WAV and as 24-bit PCM in FLAC (so there
    it loses what 24 bits cannot hold, and samples beyond ±1 are clipped).

    Raises:
        AudioFormatError: the format cannot hold this audio (FLAC: no samples,
            more than 8 channels or a rate above 655350 Hz; WAV: more than
            1024 channels or a rate above 2**31 - 1), saying why.
    """
    import soundfile as sf

    if fmt == "flac" and audio.num_frames == 0:
        raise AudioFormatError(
            "cannot write audio without samples as FLAC (libsndfile writes no file for it, "
            "and a FLAC file of no samples states an unknown length)"
        )

    limits = _LIMITS[fmt]
    if audio.channels > limits[0] or audio.sample_rate > limits[1]:
        raise AudioFormatError(
            f"cannot write {audio.channels}-channel {audio.sample_rate} Hz audio as "
            f"{fmt.upper()}, which holds at most {limits[0]} channels and {limits[1]} Hz"
        )

    subtype = {
        AudioFormat.I16: "PCM_16",
        AudioFormat.I32: "PCM_32" if fmt == "wav" else "PCM_24",
        AudioFormat.F32: "FLOAT" if fmt == "wav" else "PCM_24",
        AudioFormat.F64: "DOUBLE" if fmt == "wav" else "PCM_24",
    }[audio.format]
    buffer = io.BytesIO()
    sf.write(buffer, audio.to_numpy(), audio.sample_rate, subtype=subtype, format=fmt.upper())
    return buffer.getvalue()
