"""Errors name the right thing: InputError for inputs, ConfigError for options,
ManifestError for manifests only; the first two are still ValueErrors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import remotemedia_ray as rm
from remotemedia_ray import data
from remotemedia_ray.dataset import decode_audio, list_inputs

GAIN = {
    "version": "v1",
    "nodes": [{"id": "gain", "node_type": "MultiplyNode"}],
    "connections": [],
}


def _wav(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.zeros(160, np.float32), 16000)
    return path


def _is_input_error(error: BaseException) -> None:
    assert isinstance(error, rm.InputError) and isinstance(error, ValueError)
    assert isinstance(error, rm.RemoteMediaError)
    assert not isinstance(error, rm.ManifestError)


def _is_config_error(error: BaseException) -> None:
    assert isinstance(error, rm.ConfigError) and isinstance(error, ValueError)
    assert isinstance(error, rm.RemoteMediaError)
    assert not isinstance(error, rm.ManifestError)


def test_both_classes_are_exported() -> None:
    assert {"InputError", "ConfigError"} <= set(rm.__all__)
    assert rm.errors.InputError is rm.InputError and rm.errors.ConfigError is rm.ConfigError


# -- inputs -----------------------------------------------------------------------------


def test_inputs_that_cannot_be_listed_are_input_errors(tmp_path: Path) -> None:
    _wav(tmp_path / "in" / "a.wav")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.md").write_text("not an input")
    listed = tmp_path / "list.txt"
    listed.write_text("in/missing.wav\n")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("in/caf\xe9.wav\n".encode("latin-1"))
    no_audio = tmp_path / "no_audio.parquet"
    pq.write_table(pa.table({"id": ["x"], "text": ["hello"]}), no_audio)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file PAR1")
    repeated = tmp_path / "repeated.parquet"
    buffer = rm.AudioBuffer.from_numpy(np.zeros(160, np.float32), 16000)
    pq.write_table(rm.audio_table(["a", "b", "a"], [buffer] * 3), repeated)

    cases: dict[str, tuple[Path | str, str]] = {
        "missing path": (tmp_path / "nope", "is not a directory, glob"),
        "empty folder": (tmp_path / "empty", "matches no audio files"),
        "glob matching nothing": (f"{tmp_path}/**/*.flac", "matches no audio files"),
        "not an input": (tmp_path / "notes.md", "is not a directory, glob"),
        "list names only a missing file": (listed, "no such file 'in/missing.wav'"),
        "list is not UTF-8": (latin1, "not UTF-8"),
        "Parquet without audio": (
            no_audio,
            "needs an audio column of samples with a sample_rate column",
        ),
        "broken Parquet": (broken, "cannot read Parquet input"),
        "Parquet repeats an id": (repeated, "lists 'a' twice"),
    }
    for name, (spec, needle) in cases.items():
        try:
            list_inputs(spec)
        except rm.InputError as exc:
            assert needle in str(exc), (name, str(exc))
            _is_input_error(exc)
        else:
            pytest.fail(f"{name}: no InputError")


def test_a_missing_or_repeated_list_entry_is_an_item_with_an_error(tmp_path: Path) -> None:
    _wav(tmp_path / "in" / "a.wav")
    listed = tmp_path / "list.txt"
    listed.write_text("in/a.wav\nin/missing.wav\n./in/../in/a.wav\nin/a.wav\n")

    items = list_inputs(listed)

    errors = {item.item_id: item.error for item in items if item.error is not None}
    assert errors == {
        "in/missing.wav": f"{listed}:2: no such file 'in/missing.wav'",
        "in/../in/a.wav": f"{listed}:3: './in/../in/a.wav' is the same file as an item listed "
        "before it (through a link or another name); it runs once",
        "in/a.wav": f"{listed}:4: lists 'in/a.wav' again (first on line 1)",
    }
    good = [item.item_id for item in items if item.error is None]
    assert good == ["in/a.wav"]


def test_a_corrupt_file_is_named_by_its_path_not_by_a_buffer() -> None:
    with pytest.raises(rm.AudioFormatError) as raised:
        decode_audio(b"this is not audio" * 8, "/data/corpus/x.wav")
    message = str(raised.value)
    assert "'/data/corpus/x.wav'" in message
    assert "BytesIO" not in message and "0x" not in message
    assert "Format not recognised" in message


def test_a_truncated_header_is_named_by_its_path(tmp_path: Path) -> None:
    whole = io.BytesIO()
    sf.write(whole, np.zeros(1600, np.float32), 16000, format="WAV")
    with pytest.raises(rm.AudioFormatError) as raised:
        decode_audio(whole.getvalue()[:30], "clip.wav")
    assert "'clip.wav'" in str(raised.value) and "BytesIO" not in str(raised.value)


# -- Ray Data glue: options ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"runtime": "java"}, "runtime must be"),
        ({"on_error": "ignore"}, "on_error must be"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_map_pipeline_options_are_config_errors(options: dict[str, Any], needle: str) -> None:
    with pytest.raises(rm.ConfigError, match=needle) as raised:
        data.map_pipeline(object(), GAIN, **options)  # type: ignore[arg-type]
    _is_config_error(raised.value)


def test_map_pipeline_bad_manifest_is_still_a_manifest_error() -> None:
    broken = {**GAIN, "nodes": [{"id": "gain", "node_type": "MultiplyNode", "params": {"x": 1}}]}
    with pytest.raises(rm.ManifestError, match="gain"):
        data.map_pipeline(object(), broken)  # type: ignore[arg-type]


def test_read_audio_options_and_paths() -> None:
    with pytest.raises(rm.ConfigError, match="on_error must be") as raised:
        data.read_audio("x", on_error="ignore")  # type: ignore[arg-type]
    _is_config_error(raised.value)
    with pytest.raises(rm.InputError, match="at least one path") as raised_input:
        data.read_audio([])
    _is_input_error(raised_input.value)
    with pytest.raises(rm.ConfigError, match="concurrency"):
        data._actor_pool("four")  # type: ignore[arg-type]
    with pytest.raises(rm.ConfigError, match="keep_columns cannot name 'id'"):
        data._check_column_names(["gain"], ["id"])
