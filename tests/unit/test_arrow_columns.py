"""Arrow columns built from buffers (remotemedia_ray._arrow) equal pa.array's, and a
job's worker never imports pandas for them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotemedia_ray import _arrow
from remotemedia_ray.columns import SEGMENT

HF_AUDIO = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

_texts = st.text(max_size=6) | st.sampled_from(["\udcff", "x\x00y", "é"])
_ints = st.integers(min_value=-(2**65), max_value=2**65) | st.integers(-300, 300) | st.booleans()
_floats = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**54), 2**54)
    | st.sampled_from([np.float64(0.5), np.float32(1.5), 1e40, -0.0])
)


def _nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def _records(fields: list[str]) -> st.SearchStrategy[Any]:
    record = st.dictionaries(
        st.sampled_from([*fields, "extra"]), _nullable(_floats) | _texts, max_size=5
    )
    return record | st.fixed_dictionaries({f: _floats for f in fields})


_CASES: list[tuple[pa.DataType, st.SearchStrategy[Any]]] = [
    (pa.string(), _nullable(_texts | st.integers(0, 3) | st.binary(max_size=3))),
    (pa.large_string(), _nullable(_texts)),
    (pa.binary(), _nullable(st.binary(max_size=5) | _texts)),
    (pa.large_binary(), _nullable(st.binary(max_size=5))),
    (pa.int16(), _nullable(_ints)),
    (pa.int32(), _nullable(_ints)),
    (pa.int64(), _nullable(_ints)),
    (pa.uint8(), _nullable(_ints)),
    (pa.uint64(), _nullable(_ints)),
    (pa.float64(), _nullable(_floats | st.booleans())),
    (pa.float32(), _nullable(_floats)),
    (SEGMENT, _nullable(_records([f.name for f in SEGMENT]))),
    (pa.list_(SEGMENT), _nullable(st.lists(_records([f.name for f in SEGMENT]), max_size=4))),
    (pa.large_list(pa.int64()), _nullable(st.lists(_nullable(_ints), max_size=3))),
    (HF_AUDIO, _nullable(st.fixed_dictionaries({"bytes": st.binary(max_size=4), "path": _texts}))),
]


def _result(make: Any) -> tuple[str, Any]:
    try:
        return "ok", make()
    except Exception as exc:
        return "error", type(exc)


@pytest.mark.parametrize(("arrow_type", "cells"), _CASES, ids=lambda c: str(c)[:40])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_a_column_equals_pa_array_s(arrow_type: pa.DataType, cells: Any, data: Any) -> None:
    values = data.draw(st.lists(cells, max_size=8))
    expected = _result(lambda: pa.array(values, arrow_type))
    got = _result(lambda: _arrow.array(values, arrow_type))
    assert got[0] == expected[0], (values, got, expected)
    if expected[0] == "ok":
        assert got[1].type == expected[1].type
        assert got[1].to_pylist() == expected[1].to_pylist() or _same_nan(got[1], expected[1])
        got[1].validate(full=True)
    else:
        assert got[1] is expected[1]


def _same_nan(a: pa.Array, b: pa.Array) -> bool:
    return bool(a.equals(b)) or repr(a.to_pylist()) == repr(b.to_pylist())


def test_columns_built_from_buffers_where_the_values_are_plain() -> None:
    rows = [[{"start_ms": 0.0, "end_ms": 10, "energy_db": -3.5, "confidence": 1.0}], [], None]
    built = _arrow._build(rows, pa.list_(SEGMENT))
    assert built is not None and built.to_pylist()[0][0]["end_ms"] == 10.0
    assert built.null_count == 1
    assert _arrow._build(["a", None, "é"], pa.string()) is not None
    assert _arrow._build([np.float32(1.0)], pa.float64()) is None  # pyarrow's own
    assert _arrow._build([True], pa.float64()) is None
    assert _arrow._build([2**54 + 1], pa.float64()) is None


def test_numpy_arrays_in_and_out_share_memory() -> None:
    x = np.arange(10, dtype=np.int16)
    arrow = _arrow.from_numpy(x)
    assert arrow.type == pa.int16() and arrow.to_pylist() == x.tolist()
    back = _arrow.to_numpy(arrow.slice(3, 4))
    assert back.tolist() == [3, 4, 5, 6] and np.shares_memory(back, x)
    assert _arrow.to_numpy(pa.nulls(0, pa.float32())).size == 0
    with pytest.raises(TypeError):
        _arrow.from_numpy(np.ones(3, bool))  # Arrow packs booleans in bits
    with pytest.raises(TypeError):
        _arrow.to_numpy(pa.array([1, None]))
    mask = _arrow.valid_mask(pa.chunked_array([pa.array([1, None, 3]).slice(1), pa.array([4])]))
    assert mask.tolist() == [False, True, True]


def test_what_pyarrow_would_not_put_in_one_array_goes_to_pyarrow() -> None:
    limit = 2**31 - 2  # pyarrow's builders: one 32-bit-offset array ends below 2**31 - 1
    assert _arrow._offsets(np.array([limit, 0]), large=False) is not None
    assert _arrow._offsets(np.array([limit, 1]), large=False) is None
    assert _arrow._offsets(np.array([limit, 1]), large=True) is not None
    assert _arrow.array(iter(["a", None]), pa.string()).to_pylist() == ["a", None]


def test_records_too_large_for_arrow_are_stored_as_json() -> None:
    from remotemedia_ray.columns import value_columns

    column = value_columns([[{"a": 2**64}], None])["value"]
    assert column.type == pa.string() and column.to_pylist() == [
        '[{"a": 18446744073709551616}]',
        None,
    ]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (
            [{"a": 1, "b": 2.5}, {"a": 0.5, "b": 1}],
            pa.struct([("a", pa.float64()), ("b", pa.float64())]),
        ),
        ([{"a": 1}, {"b": 1}], None),
        ([{"a": "x"}], None),
        ([{"a": True}], None),
        ([{}], None),
        ([], None),
        ([{"a": 1}, [1]], None),
    ],
)
def test_float_struct_infers_what_pa_array_would_for_numeric_records(
    records: list[Any], expected: pa.DataType | None
) -> None:
    assert _arrow.float_struct(records) == expected
    if expected is not None:
        inferred = pa.array(records).type
        assert [f.name for f in inferred] == [f.name for f in expected]


def test_a_job_never_imports_pandas(tmp_path: Path) -> None:
    """pyarrow imports pandas the first time pa.array runs (0.2-0.5 s in every
    worker); the job's columns are built without it."""
    pytest.importorskip("pandas")  # the dev extra has it (Ray Data, datasets)
    import soundfile as sf

    rng = np.random.default_rng(3)
    for i, channels in enumerate((1, 2)):
        noise = rng.normal(0, 0.01, (48_000, channels))
        noise[12_000:30_000] += 0.3 * np.sin(np.arange(18_000) / 7)[:, None]
        sf.write(tmp_path / f"f{i}.wav", noise.astype(np.float32), 48_000, subtype="PCM_16")
    manifest = Path(__file__).parents[2] / "examples" / "speech_prep.json"
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from remotemedia_ray.dataset.job import JobConfig, run_job
        result = run_job(JobConfig(manifest=Path({str(manifest)!r}), input={str(tmp_path)!r},
            outdir=Path({str(tmp_path / "out")!r}), progress="off", runtime="local"))
        assert result.items_done == 2 and result.exit_code == 0, result
        print("pandas" in sys.modules)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
