"""Decoding audio files: libsndfile or FFmpeg (PyAV), whichever is faster for the format.

Every file is first probed: libsndfile reads the header of WAV, FLAC, OGG
(Vorbis and Opus), MP3 and the other formats it knows; FFmpeg (through PyAV,
which bundles it) reads everything else (M4A/AAC/MP4, WebM/Matroska, raw AAC,
WMA, ...). A format both can read is decoded by the one that
``python -m benchmarks.decode_speed`` measured faster, where it is also
sample-accurate (:data:`FFMPEG_FASTER`).

Decoding is sample-accurate: libsndfile and FFmpeg drop the encoder's priming
and padding where the file records them (the LAME header of an MP3, the
pre-skip and end granule of an Ogg stream, Matroska's codec delay and discard
padding); for MP4-family files the samples are also cut to the stream
duration the container states, which FFmpeg's AAC decoder leaves in. Raw
AAC (ADTS) records no priming and is decoded as it is. Integer PCM stays
integer (16-bit as int16, 32-bit as int32, and what FFmpeg decodes as 32-bit,
24-bit FLAC or ALAC, as int32); every other encoding decodes to float32.

A canonical WAV of 16- or 32-bit integer or 32-bit float PCM needs no
decoder: its samples are read in place, as a view of the file's bytes
(:func:`_wav_pcm`), exactly the array libsndfile would copy out (tests
compare them), without libsndfile's per-call cost (about 1 ms per file).

Long files stream: :func:`decode_windows` yields one window of frames at a
time, with memory bounded by the window whatever the file's length, and the
concatenated windows equal :func:`decode_audio` of the whole file.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np

from remotemedia_ray.audio import AudioBuffer
from remotemedia_ray.errors import AudioFormatError

__all__ = [
    "FFMPEG_FASTER",
    "Decoder",
    "Probe",
    "decode_audio",
    "decode_windows",
    "probe",
]

Decoder = Literal["sndfile", "ffmpeg"]

FFMPEG_FASTER: frozenset[tuple[str, str]] = frozenset({("OGG", "OPUS")})
"""libsndfile ``(format, subtype)`` pairs that FFmpeg decodes faster, so it does
(for Opus, files made at 48 kHz: FFmpeg always decodes Opus at 48 kHz).

Measured by ``python -m benchmarks.decode_speed`` (x realtime per core, one
process, same 60 s of 48 kHz stereo, to the arrays the job uses): Opus is
1.7 to 2.2x faster in FFmpeg; WAV (int16 by 30x), FLAC, Vorbis and MP3 are
faster in libsndfile. FFmpeg also drops the last samples of some Vorbis
streams (128 of a libsndfile-written file), another reason to keep Vorbis there.
"""

_FFMPEG_OPUS_RATE = 48000
"""FFmpeg decodes Opus at 48 kHz whatever rate it was made from; libsndfile at that
rate. So FFmpeg takes an Opus file only when that rate is 48 kHz: the samples then
are the same, and a 16 kHz speech file stays 16 kHz (and cheaper to decode)."""

_MP4_FAMILY = re.compile(r"(^|,)(mov|mp4|m4a|3gp|3g2|mj2|ipod)(,|$)")
"""FFmpeg demuxer names whose stream duration is the exact sample count."""

_COUNTED = re.compile(r"(^|,)(mov|mp4|m4a|3gp|3g2|mj2|ipod|ogg|matroska|webm)(,|$)")
"""FFmpeg demuxer names whose duration is recorded in the file, not guessed."""


@dataclass(frozen=True)
class Probe:
    """What a file's header says, and which decoder reads it.

    Attributes:
        decoder: ``"sndfile"`` (libsndfile) or ``"ffmpeg"`` (PyAV).
        sample_rate: Samples per second.
        channels: Channels.
        frames: Frames: exact for libsndfile, the container's estimate for
            FFmpeg (``-1`` when it states none).
        dtype: What the samples decode to: ``int16``/``int32`` for 16/32-bit
            integer PCM, else ``float32``.
        codec: The encoding, for messages (``"PCM_16"``, ``"aac"``, ...).
        counted: Whether ``frames`` is the container's count rather than a
            guess from the bitrate: then a file that decodes to clearly fewer
            frames is truncated, an error.
    """

    decoder: Decoder
    sample_rate: int
    channels: int
    frames: int
    dtype: str
    codec: str
    counted: bool = True

    def check_complete(self, decoded: int, name: str) -> None:
        """Raise when ``decoded`` frames fall clearly short of the stated count.

        Up to 1% and 50 ms short is allowed: some headers round or estimate.

        Raises:
            AudioFormatError: A truncated file, naming it and both counts.
        """
        if not self.counted or self.frames <= 0:
            return
        if decoded < self.frames * 0.99 - 0.05 * self.sample_rate:
            raise AudioFormatError(
                f"cannot decode audio file {name!r}: it is truncated (its header states "
                f"{self.frames} frames, {decoded} could be decoded)"
            )


def probe(source: bytes | str | Any, name: str, *, keep_pcm: bool = True) -> Probe:
    """Read a file's header and pick its decoder.

    Args:
        source: The file's bytes, its local path, or an open binary file
            (seekable; pyarrow's input files are).
        name: How errors name the file.
        keep_pcm: Keep 16/32-bit integer PCM as integers.

    Raises:
        AudioFormatError: Neither libsndfile nor FFmpeg can read it (naming
            the file, with what each said).
    """
    if isinstance(source, (bytes, bytearray)):
        wav = _wav_pcm(source)
        if wav is not None and (keep_pcm or wav[0].dtype == "float32"):
            return wav[0]
    info, refusal = _sndfile_info(source)
    faster = info is not None and (info.format, info.subtype) in FFMPEG_FASTER
    if info is not None and not (faster and info.samplerate == _FFMPEG_OPUS_RATE):
        dtype = _pcm_dtype(info.subtype) if keep_pcm else "float32"
        frames = info.frames
        if info.format in _HEADER_COUNTED:  # libsndfile counts only the frames present
            head = _head(source)  # read again only for these: a remote file costs a request
            stated = _stated_pcm_frames(head, info.channels * _SAMPLE_BYTES.get(info.subtype, 0))
            frames = max(frames, stated or 0)
        return Probe("sndfile", info.samplerate, info.channels, frames, dtype, info.subtype)
    with _open_container(source, name, refusal) as container:
        stream = _audio_stream(container, name)
        return Probe(
            "ffmpeg",
            int(stream.rate),
            int(stream.channels),
            _stated_frames(container, stream),
            _av_dtype(stream.format.name, keep_pcm),
            stream.codec_context.name,
            counted=bool(_COUNTED.search(container.format.name or "")),
        )


def decode_audio(
    data: bytes, name: str, *, keep_pcm: bool = True, probed: Probe | None = None
) -> AudioBuffer:
    """Decode a whole file from its bytes.

    Args:
        data: The encoded file.
        name: How errors name the file (its path).
        keep_pcm: Keep 16- and 32-bit integer PCM as int16/int32; otherwise
            (and for every other encoding) decode to float32.
        probed: The file's :func:`probe`, when already read (its ``dtype``
            then says what the samples become, whatever ``keep_pcm``).

    Raises:
        AudioFormatError: An empty or undecodable file, naming it.
    """
    if not data:
        raise AudioFormatError(f"cannot decode audio file {name!r}: empty file")
    found = probed or probe(data, name, keep_pcm=keep_pcm)
    wav = _wav_pcm(data) if found.decoder == "sndfile" else None
    if wav is not None and wav[0].dtype == found.dtype:
        samples = wav[1]  # in place: the file's own bytes
    elif found.decoder == "sndfile":
        import soundfile as sf

        try:
            samples, _ = sf.read(io.BytesIO(data), dtype=found.dtype, always_2d=True)
        except Exception as exc:  # libsndfile's errors
            raise AudioFormatError(
                f"cannot decode audio file {name!r}: {_sndfile_problem(exc)}"
            ) from None
    else:
        pieces = list(_ffmpeg_blocks(data, name, found))
        if not pieces:
            samples = np.zeros((0, found.channels), found.dtype)
        else:
            samples = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    found.check_complete(samples.shape[0], name)
    return AudioBuffer.from_numpy(samples, found.sample_rate)


def decode_windows(
    source: str | Any, name: str, found: Probe, window_frames: int
) -> Iterator[AudioBuffer]:
    """Decode a file window by window: ``window_frames`` frames each (the last may be shorter).

    Only one window (and one codec frame) is held at a time. The windows
    concatenated equal :func:`decode_audio` of the whole file. At least one
    buffer is yielded (an empty one for a file without samples).

    Args:
        source: The local path, or an open binary file.
        name: How errors name the file.
        found: Its :func:`probe`.
        window_frames: Frames per window, >= 1.

    Raises:
        AudioFormatError: The file cannot be decoded (naming it and the frame).
    """
    windows = (
        _sndfile_windows(source, name, found, window_frames)
        if found.decoder == "sndfile"
        else _ffmpeg_windows(source, name, found, window_frames)
    )
    decoded = 0
    for window in windows:
        decoded += window.num_frames
        yield window
    found.check_complete(decoded, name)


def _ffmpeg_windows(
    source: str | Any, name: str, found: Probe, window_frames: int
) -> Iterator[AudioBuffer]:
    held: list[np.ndarray] = []
    count = 0
    yielded = False
    for block in _ffmpeg_blocks(source, name, found):
        held.append(block)
        count += block.shape[0]
        while count >= window_frames:
            joined = np.concatenate(held) if len(held) > 1 else held[0]
            yield AudioBuffer.from_numpy(joined[:window_frames], found.sample_rate)
            yielded = True
            rest = joined[window_frames:]
            held, count = ([rest] if rest.shape[0] else []), rest.shape[0]
    if held or not yielded:
        tail = np.concatenate(held) if held else np.zeros((0, found.channels), found.dtype)
        yield AudioBuffer.from_numpy(tail, found.sample_rate)


def _sndfile_problem(exc: BaseException) -> str:
    """What libsndfile said, without the in-memory buffer it was given.

    soundfile's messages name what it opened (``Error opening <_io.BytesIO
    object at 0x...>: ...``); for bytes in memory that names nothing useful,
    so only libsndfile's own words are kept (the caller names the file).
    """
    text = getattr(exc, "error_string", None)
    if not isinstance(text, str) or not text:
        text = _BUFFER_REPR.sub("", str(exc)).strip() or type(exc).__name__
    return text


_BUFFER_REPR = re.compile(r"(?:Error opening )?<_io\.BytesIO object at 0x[0-9a-fA-F]+>:?\s*")


# -- WAV in place ------------------------------------------------------------------------

_WAV_SUBTYPES: dict[tuple[int, int], tuple[str, str]] = {
    (1, 16): ("int16", "PCM_16"),
    (1, 32): ("int32", "PCM_32"),
    (3, 32): ("float32", "FLOAT"),
}
"""(format tag, bits per sample) -> (dtype, libsndfile subtype) of the WAVs read in place."""
_EXTENSIBLE = 0xFFFE
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
"""The last 14 bytes of the KSDATAFORMAT_SUBTYPE GUIDs of PCM and IEEE float."""


def _wav_pcm(data: bytes | bytearray) -> tuple[Probe, np.ndarray] | None:
    """A canonical little-endian WAV's header and samples, the samples a read-only
    ``(frames, channels)`` view of ``data``; None for any other file.

    Only what needs no decoding is taken: 16/32-bit integer or 32-bit float PCM
    (plain or WAVE_FORMAT_EXTENSIBLE with all bits valid), its ``fmt `` chunk
    before a ``data`` chunk that lies whole inside the file and holds whole
    frames. Anything else (RF64, a truncated or streamed file, other sample
    types) is left to libsndfile, which knows every rule of the format.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    layout: tuple[str, str, int, int, int] | None = None
    pos = 12
    while pos + 8 <= len(data):
        chunk = bytes(data[pos : pos + 4])
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = pos + 8
        if body + size > len(data):
            return None
        if chunk == b"fmt ":
            if size < 16:
                return None
            tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", data, body)
            if tag == _EXTENSIBLE:
                if size < 40 or bytes(data[body + 26 : body + 40]) != _GUID_TAIL:
                    return None
                valid = int.from_bytes(data[body + 18 : body + 20], "little")
                tag = int.from_bytes(data[body + 24 : body + 26], "little")
                if valid not in (0, bits):
                    return None
            kind = _WAV_SUBTYPES.get((tag, bits))
            if kind is None or channels < 1 or rate < 1 or block != channels * bits // 8:
                return None
            layout = (*kind, channels, rate, block)
        elif chunk == b"data":
            if layout is None or size % layout[4]:
                return None
            dtype, subtype, channels, rate, block = layout
            frames = size // block
            samples = np.frombuffer(
                data, np.dtype(dtype).newbyteorder("<"), frames * channels, body
            ).reshape(frames, channels)
            if not samples.dtype.isnative:  # a big-endian machine
                samples = samples.astype(np.dtype(dtype))
            return Probe("sndfile", rate, channels, frames, dtype, subtype), samples
        pos = body + size + (size & 1)  # chunks are padded to an even size
    return None


_SAMPLE_BYTES = {
    "PCM_S8": 1, "PCM_U8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3,
    "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
}  # fmt: skip
"""Bytes per sample of the uncompressed libsndfile subtypes."""

_HEADER_COUNTED = frozenset({"WAV", "WAVEX", "AIFF"})
"""libsndfile formats whose header :func:`_stated_pcm_frames` reads."""

_UNSTATED = 0x7FFF0000
"""A WAV data size from here up states no length: writers to a pipe put a
placeholder there (0xFFFFFFFF, 0x7FFFFFFF, SoX's 0x7FFFF000); AIFF likewise."""


def _stated_pcm_frames(head: bytes, frame_bytes: int) -> int | None:
    """The frames a WAV's or AIFF's header states, from the file's first bytes: the
    ``data`` chunk's size over ``frame_bytes`` (channels times libsndfile's sample
    size: a header's own block size may be wrong), AIFF's ``COMM`` count.

    None where they do not say: another format or a compressed encoding
    (``frame_bytes`` 0), a size of 0 or a placeholder (:data:`_UNSTATED`), a
    header beyond ``head``. libsndfile reports only the frames present, so a
    file cut short would otherwise pass for a short file.
    """
    if frame_bytes <= 0:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= len(head):
            chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
            if chunk == b"data":
                return size // frame_bytes if 0 < size < _UNSTATED else None
            pos += 8 + size + (size & 1)
        return None
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        pos = 12
        while pos + 8 <= len(head):
            chunk, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "big")
            if chunk == b"COMM" and pos + 14 <= len(head):
                frames = int.from_bytes(head[pos + 10 : pos + 14], "big")
                return frames if 0 < frames * frame_bytes < _UNSTATED else None
            pos += 8 + size + (size & 1)
    return None


_HEAD_BYTES = 1 << 16
"""The bytes of a file read for :func:`_stated_pcm_frames`."""


def _head(source: bytes | bytearray | str | Any) -> bytes:
    """The first :data:`_HEAD_BYTES` of a file given as bytes, a path or an open file
    (which is left at its start)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:_HEAD_BYTES])
    try:
        if isinstance(source, str):
            with open(source, "rb") as handle:
                return handle.read(_HEAD_BYTES)
        try:
            return bytes(source.read(_HEAD_BYTES))
        finally:
            source.seek(0)
    except OSError:
        return b""


# -- libsndfile -------------------------------------------------------------------------


def _sndfile_info(source: bytes | str | Any) -> tuple[Any, str]:
    """soundfile's header info, or None and what libsndfile said."""
    import soundfile as sf

    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            if not len(source):
                return None, "empty file"
            return sf.info(io.BytesIO(source)), ""
        return sf.info(source), ""
    except Exception as exc:
        return None, _sndfile_problem(exc)
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def _pcm_dtype(subtype: str) -> str:
    return {"PCM_16": "int16", "PCM_32": "int32"}.get(subtype, "float32")


def _sndfile_windows(
    source: str | Any, name: str, found: Probe, window_frames: int
) -> Iterator[AudioBuffer]:
    import soundfile as sf

    try:
        handle = sf.SoundFile(source)
    except Exception as exc:
        raise AudioFormatError(
            f"cannot decode audio file {name!r}: {_sndfile_problem(exc)}"
        ) from None
    with handle:
        yielded = False
        while True:
            try:
                block = handle.read(window_frames, dtype=found.dtype, always_2d=True)
            except Exception as exc:
                raise AudioFormatError(
                    f"cannot decode audio file {name!r} after frame {handle.tell()}: "
                    f"{_sndfile_problem(exc)}"
                ) from None
            if block.shape[0] == 0 and yielded:
                return
            yielded = True
            yield AudioBuffer.from_numpy(block, found.sample_rate)
            if block.shape[0] < window_frames:
                return


# -- FFmpeg (PyAV) ----------------------------------------------------------------------


def _open_container(source: bytes | str | Any, name: str, refusal: str = "") -> Any:
    """The file opened by FFmpeg; ``refusal`` is what libsndfile said of it, if anything."""
    import av

    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    try:
        return av.open(source, mode="r")
    except Exception as exc:  # av.error.FFmpegError and its kin
        problem = _av_problem(exc)
        if refusal:
            problem = f"libsndfile: {refusal}; FFmpeg: {problem}"
        raise AudioFormatError(f"cannot decode audio file {name!r}: {problem}") from None


def _audio_stream(container: Any, name: str) -> Any:
    streams = container.streams.audio
    if not streams:
        raise AudioFormatError(f"cannot decode audio file {name!r}: it has no audio stream")
    stream = streams[0]
    if not stream.rate or not stream.channels:
        raise AudioFormatError(
            f"cannot decode audio file {name!r}: its audio stream states no sample rate "
            "or channel count"
        )
    return stream


def _av_problem(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).rstrip(".")


def _av_dtype(sample_format: str, keep_pcm: bool) -> str:
    if keep_pcm and sample_format in ("s16", "s16p"):
        return "int16"
    if keep_pcm and sample_format in ("s32", "s32p"):
        return "int32"
    return "float32"


def _stated_frames(container: Any, stream: Any) -> int:
    """The frames the container states (an estimate for most formats), or -1."""
    if stream.duration is not None and stream.time_base is not None:
        frames: int = round(stream.duration * stream.time_base * stream.rate)
        return frames
    if container.duration is not None:
        estimate: int = round(Fraction(container.duration, 1_000_000) * stream.rate)
        return estimate
    return -1


def _ffmpeg_blocks(source: bytes | str | Any, name: str, found: Probe) -> Iterator[np.ndarray]:
    """The decoded samples, one codec frame at a time, as ``(n, channels)`` arrays.

    Samples before the stream's start time are dropped, and for MP4-family
    files those after its stated duration (the encoder's padding).
    """
    with _open_container(source, name) as container:
        stream = _audio_stream(container, name)
        rate, channels = found.sample_rate, found.channels
        limit = -1
        if _MP4_FAMILY.search(container.format.name or "") and stream.duration:
            limit = _stated_frames(container, stream)
        start = stream.start_time
        emitted = 0
        try:
            for frame in container.decode(stream):
                if frame.sample_rate != rate or len(frame.layout.channels) != channels:
                    raise AudioFormatError(
                        f"cannot decode audio file {name!r}: at frame {emitted} the stream "
                        f"changes to {frame.sample_rate} Hz, {len(frame.layout.channels)} "
                        f"channels (it began with {rate} Hz, {channels})"
                    )
                block = _interleaved(frame, channels, found.dtype)
                if start is not None and frame.pts is not None and frame.pts < start:
                    early = round((start - frame.pts) * frame.time_base * rate)
                    block = block[early:]
                if limit >= 0 and emitted + block.shape[0] > limit:
                    block = block[: max(0, limit - emitted)]
                if block.shape[0]:
                    emitted += block.shape[0]
                    yield block
        except AudioFormatError:
            raise
        except Exception as exc:  # FFmpeg's decode errors
            raise AudioFormatError(
                f"cannot decode audio file {name!r} after frame {emitted}: {_av_problem(exc)}"
            ) from None


def _interleaved(frame: Any, channels: int, dtype: str) -> np.ndarray:
    """A decoded frame as ``(n, channels)`` samples of ``dtype``."""
    raw: np.ndarray = frame.to_ndarray()
    array = raw.T if frame.format.is_planar else raw.reshape(-1, channels)
    if array.dtype == dtype:
        return array
    kind = array.dtype.kind
    if kind == "f":
        return array.astype(np.float32)
    if kind == "u":  # 8-bit PCM: unsigned around 128
        return ((array.astype(np.float32) - 128.0) / 128.0).astype(np.float32)
    scale = float(2 ** (8 * array.dtype.itemsize - 1))
    return (array.astype(np.float64) / scale).astype(np.float32)
