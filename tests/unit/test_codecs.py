"""Decoding every codec a speech corpus comes in: libsndfile or FFmpeg, exact, streamed."""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

import remotemedia_ray as rm
from benchmarks.suites._common import CODECS, RATES, encode
from remotemedia_ray.audio import concat_audio
from remotemedia_ray.dataset.codecs import (
    FFMPEG_FASTER,
    _wav_pcm,
    decode_audio,
    decode_windows,
    probe,
)
from remotemedia_ray.dataset.readers import AudioDuration, AudioFileReader, FileChunks

DECODER = {
    "mp3": "sndfile",
    "flac": "sndfile",
    "opus": "ffmpeg",
    "webm": "ffmpeg",
    "m4a": "ffmpeg",
    "aac": "ffmpeg",
}
"""Which decoder reads each test codec (libsndfile cannot open the last three)."""


def _glide(rate: int, seconds: float, channels: int) -> np.ndarray:
    """A tone gliding upwards (no period, so a shift shows), ``(frames, channels)`` float32."""
    t = np.arange(round(rate * seconds)) / rate
    base = 0.3 * np.sin(2 * np.pi * (220 + 60 * t) * t)
    return np.stack([base * (1.0 - 0.2 * c) for c in range(channels)], axis=1).astype(np.float32)


def _encoded(ext: str, seconds: float = 2.0, channels: int = 2) -> tuple[np.ndarray, int, bytes]:
    rate = RATES.get(ext, 44100)
    x = _glide(rate, seconds, channels)
    return x, rate, encode(x, rate, ext)


def _float(buffer: rm.AudioBuffer) -> np.ndarray:
    y = buffer.to_numpy_2d()
    return y / 32768.0 if y.dtype == np.int16 else y.astype(np.float64)


def _lag(x: np.ndarray, y: np.ndarray) -> int:
    """The shift of ``y`` against ``x`` (first channel) that matches best."""
    a, b = x[4000:30000, 0], y[:, 0]
    return max(range(-1500, 1501), key=lambda k: float(np.dot(a, b[4000 + k : 30000 + k])))


@pytest.mark.parametrize("ext", sorted(CODECS))
def test_each_codec_decodes_sample_accurately(ext: str) -> None:
    x, rate, data = _encoded(ext)
    found = probe(data, f"a.{ext}")
    assert (found.decoder, found.sample_rate, found.channels) == (DECODER[ext], rate, 2)
    audio = decode_audio(data, f"a.{ext}")
    y = _float(audio)
    if ext == "aac":  # raw ADTS records no priming: the encoder's 1024 frames stay in
        assert audio.num_frames >= len(x) and _lag(x, y) == 1024
    else:  # no priming, no padding: as long as what was encoded, and in time with it
        assert audio.num_frames == len(x)
        assert _lag(x, y) == 0
        noise = float(np.sum((y - x) ** 2))
        snr_db = 10 * np.log10(float(np.sum(x.astype(np.float64) ** 2)) / max(noise, 1e-30))
        assert snr_db > (60 if ext == "flac" else 10)
    assert audio.format == (rm.AudioFormat.I16 if ext == "flac" else rm.AudioFormat.F32)


@pytest.mark.parametrize(("subtype", "decoder"), [("OPUS", "ffmpeg"), ("VORBIS", "sndfile")])
def test_ogg_goes_to_the_faster_exact_decoder(tmp_path: Path, subtype: str, decoder: str) -> None:
    rate = 48000
    path = tmp_path / "a.ogg"
    with sf.SoundFile(path, "w", rate, 1, format="OGG", subtype=subtype) as handle:
        for start in range(0, rate, 4096):  # libsndfile's Vorbis encoder needs small writes
            handle.write(_glide(rate, 1.0, 1)[start : start + 4096, 0])
    assert (("OGG", subtype) in FFMPEG_FASTER) == (decoder == "ffmpeg")
    assert probe(str(path), str(path)).decoder == decoder
    audio = decode_audio(path.read_bytes(), str(path))
    assert audio.num_frames == rate == sf.info(str(path)).frames


@pytest.mark.parametrize("ext", sorted(CODECS))
@pytest.mark.parametrize("window", [1000, 4096, 44100])
def test_windows_equal_the_whole_file(ext: str, window: int) -> None:
    _, _, data = _encoded(ext, seconds=1.5)
    found = probe(data, "a")
    whole = decode_audio(data, "a", probed=found)
    windows = list(decode_windows(io.BytesIO(data), "a", found, window))
    assert all(w.num_frames == window for w in windows[:-1])
    assert 0 < windows[-1].num_frames <= window or whole.num_frames == 0
    assert concat_audio(windows) == whole


@pytest.mark.parametrize("ext", sorted(CODECS))
def test_the_reader_streams_a_long_compressed_file_like_the_whole_file(
    tmp_path: Path, ext: str
) -> None:
    _, _, data = _encoded(ext, seconds=3.0)
    path = tmp_path / f"long.{ext}"
    path.write_bytes(data)
    whole = decode_audio(data, str(path))
    reader = AudioFileReader()
    reader.initialize({"window_s": 0.5})
    chunks = reader.execute({"path": str(path), "row": None})
    assert isinstance(chunks, FileChunks)
    assert chunks.read_all() == whole
    assert pickle.loads(pickle.dumps(chunks)).read_all() == whole
    duration = AudioDuration()
    duration.initialize({})
    counter = duration.open_stream()
    for chunk in chunks.chunks():
        counter.push(chunk)
    assert counter.finish() == whole.duration_seconds  # counted, not the header's guess


@pytest.mark.parametrize("ext", sorted(CODECS))
@pytest.mark.parametrize("damage", ["body", "truncated", "random"])
def test_a_corrupt_file_of_each_codec_is_an_error_naming_it(ext: str, damage: str) -> None:
    _, _, data = _encoded(ext)
    if ext == "opus" and damage == "truncated":
        # Ogg states no total length: a stream cut short is a shorter stream
        half = decode_audio(data[: len(data) // 2], "half.opus")
        assert 0 < half.num_frames < decode_audio(data, "whole.opus").num_frames
        return
    rng = np.random.default_rng(1)
    bad = {
        "body": data[:200] + rng.bytes(len(data) - 400) + data[-200:],  # header kept
        "truncated": data[: len(data) // 2],
        "random": rng.bytes(len(data)),
    }[damage]
    with pytest.raises(rm.AudioFormatError, match=rf"'corpus/bad\.{ext}'"):
        decode_audio(bad, f"corpus/bad.{ext}")


def test_a_truncated_file_streamed_in_windows_fails_at_its_end() -> None:
    _, _, data = _encoded("webm", seconds=3.0)
    bad = data[: len(data) // 2]
    found = probe(bad, "half.webm")
    with pytest.raises(rm.AudioFormatError, match="truncated"):
        list(decode_windows(io.BytesIO(bad), "half.webm", found, 4096))


def test_an_empty_or_audio_less_file_is_refused() -> None:
    with pytest.raises(rm.AudioFormatError, match="empty file"):
        decode_audio(b"", "empty.mp3")
    with pytest.raises(rm.AudioFormatError, match="not-audio.txt"):
        decode_audio(b"just some text, not a media file\n" * 20, "not-audio.txt")


def test_integer_pcm_stays_integer_unless_asked() -> None:
    x = _glide(16000, 0.5, 1)
    out = io.BytesIO()
    sf.write(out, x, 16000, format="WAV", subtype="PCM_16")
    assert decode_audio(out.getvalue(), "a.wav").format == rm.AudioFormat.I16
    assert decode_audio(out.getvalue(), "a.wav", keep_pcm=False).format == rm.AudioFormat.F32


def test_opus_made_at_16_khz_stays_16_khz() -> None:
    """FFmpeg decodes every Opus file at 48 kHz; libsndfile at the rate it was made
    from, which is what a 16 kHz speech corpus expects (and cheaper)."""
    x = _glide(16000, 1.0, 1)
    data = encode(x, 16000, "opus")
    found = probe(data, "a.opus")
    assert (found.decoder, found.sample_rate) == ("sndfile", 16000)
    audio = decode_audio(data, "a.opus")
    assert (audio.sample_rate, audio.num_frames) == (16000, 16000)
    assert probe(encode(_glide(48000, 1.0, 1), 48000, "opus"), "b.opus").decoder == "ffmpeg"


@pytest.mark.parametrize("ext", ["opus", "m4a", "flac"])
def test_the_duration_of_chunks_not_streamed_is_counted(tmp_path: Path, ext: str) -> None:
    _, _, data = _encoded(ext, seconds=2.0)
    path = tmp_path / f"a.{ext}"
    path.write_bytes(data)
    reader = AudioFileReader()
    reader.initialize({"window_s": 0.5})
    chunks = reader.execute({"path": str(path), "row": None})
    duration = AudioDuration()
    duration.initialize({})
    assert duration.execute(chunks) == decode_audio(data, "a").duration_seconds


# -- WAV read in place ------------------------------------------------------------------

_WAV_SUBTYPES = {"PCM_16": np.int16, "PCM_32": np.int32, "FLOAT": np.float32}


@settings(max_examples=60, deadline=None)
@given(
    subtype=st.sampled_from(sorted(_WAV_SUBTYPES)),
    container=st.sampled_from(["WAV", "WAVEX"]),
    frames=st.integers(0, 300),
    channels=st.integers(1, 8),
    rate=st.sampled_from([8000, 16000, 44100, 48000, 96000]),
)
def test_a_pcm_wav_read_in_place_equals_libsndfile(
    subtype: str, container: str, frames: int, channels: int, rate: int
) -> None:
    """The in-place read gives libsndfile's header and samples exactly: extremes,
    NaN and infinities included, any channel count, empty files, WAVE_FORMAT_EXTENSIBLE."""
    rng = np.random.default_rng(frames * 10 + channels)
    dtype = _WAV_SUBTYPES[subtype]
    if dtype is np.float32:
        x = rng.standard_normal((frames, channels)).astype(dtype) * 4
        x.flat[: min(3, x.size)] = [np.nan, np.inf, -np.inf][: min(3, x.size)]
    else:
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, (frames, channels), endpoint=True, dtype=dtype)
    sink = io.BytesIO()
    sf.write(sink, x, rate, format=container, subtype=subtype)
    data = sink.getvalue()

    found = probe(data, "x.wav")
    info = sf.info(io.BytesIO(data))
    assert (found.decoder, found.sample_rate, found.channels, found.frames, found.codec) == (
        "sndfile",
        info.samplerate,
        info.channels,
        info.frames,
        info.subtype,
    )
    got = decode_audio(data, "x.wav").to_numpy_2d()
    want, _ = sf.read(io.BytesIO(data), dtype=np.dtype(dtype).name, always_2d=True)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert not got.flags.writeable


def _riff(*chunks: tuple[bytes, bytes]) -> bytes:
    body = b"WAVE" + b"".join(
        cid + len(b).to_bytes(4, "little") + b + (b"\0" if len(b) % 2 else b"") for cid, b in chunks
    )
    return b"RIFF" + len(body).to_bytes(4, "little") + body


def _fmt(tag: int = 1, channels: int = 2, rate: int = 16000, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def test_a_wav_with_other_chunks_before_its_samples_is_read_in_place() -> None:
    samples = np.arange(-6, 6, dtype=np.int16).reshape(6, 2)
    data = _riff(
        (b"LIST", b"INFOISFT\x03\x00\x00\x00ab\x00"),  # odd size: padded
        (b"fmt ", _fmt()),
        (b"junk", b"\x01\x02\x03"),
        (b"data", samples.tobytes()),
    )
    assert _wav_pcm(data) is not None
    np.testing.assert_array_equal(decode_audio(data, "x.wav").to_numpy_2d(), samples)
    want, _ = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    np.testing.assert_array_equal(want, samples)


@pytest.mark.parametrize(
    "data",
    [
        _riff((b"fmt ", _fmt(bits=24)), (b"data", bytes(12))),  # 24-bit: libsndfile
        _riff((b"fmt ", _fmt(bits=8)), (b"data", bytes(4))),  # 8-bit unsigned
        _riff((b"fmt ", _fmt(tag=3, bits=64)), (b"data", bytes(16))),  # float64
        _riff((b"fmt ", _fmt(tag=6, bits=8)), (b"data", bytes(4))),  # A-law
        _riff((b"data", bytes(8)), (b"fmt ", _fmt())),  # samples before the format
        _riff((b"fmt ", _fmt()), (b"data", bytes(7))),  # not whole frames
        _riff((b"fmt ", _fmt()), (b"data", bytes(16)))[:-4],  # truncated samples
        b"RIFX" + _riff((b"fmt ", _fmt()), (b"data", bytes(8)))[4:],  # big-endian RIFF
        b"RF64" + bytes(40),
    ],
    ids=["24bit", "8bit", "float64", "alaw", "data-first", "partial", "truncated", "rifx", "rf64"],
)
def test_other_wavs_are_left_to_libsndfile(data: bytes) -> None:
    assert _wav_pcm(data) is None


@pytest.mark.parametrize("fmt", ["WAV", "AIFF"])
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24", "FLOAT"])
def test_a_wav_or_aiff_cut_short_is_truncated_whole_and_in_windows(
    tmp_path: Path, fmt: str, subtype: str
) -> None:
    # libsndfile counts only the frames present; the header states the rest.
    buffer = io.BytesIO()
    x = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    sf.write(buffer, x, 16000, format=fmt, subtype=subtype)
    data = buffer.getvalue()
    assert decode_audio(data, "whole").num_frames == 16000
    cut = data[: len(data) // 3]
    states = r"truncated \(its header states 16000 frames, \d+ could be decoded\)"
    with pytest.raises(rm.AudioFormatError, match=rf"'corpus/cut': it is {states}"):
        decode_audio(cut, "corpus/cut")
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(cut)
    with pytest.raises(rm.AudioFormatError, match=states):
        list(decode_windows(str(path), "cut", probe(str(path), "cut"), 1000))


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000])
def test_a_streamed_wav_whose_header_states_no_length_is_read_to_its_end(size: int) -> None:
    # Writers to a pipe leave a placeholder for the data chunk's size (SoX: 0x7FFFF000).
    samples = np.arange(-8, 8, dtype=np.int16).reshape(8, 2)
    data = bytearray(_riff((b"fmt ", _fmt()), (b"data", samples.tobytes())))
    data[40:44] = size.to_bytes(4, "little")
    np.testing.assert_array_equal(decode_audio(bytes(data), "live.wav").to_numpy_2d(), samples)


def test_a_wav_whose_header_states_a_wrong_block_size_is_not_called_truncated() -> None:
    samples = np.arange(-8, 8, dtype=np.int16).reshape(8, 2)
    data = bytearray(_riff((b"fmt ", _fmt()), (b"data", samples.tobytes())))
    data[32:34] = (1).to_bytes(2, "little")  # blockAlign 1 instead of 4
    whole, _ = sf.read(io.BytesIO(bytes(data)), dtype="int16", always_2d=True)
    np.testing.assert_array_equal(decode_audio(bytes(data), "odd.wav").to_numpy_2d(), whole)
