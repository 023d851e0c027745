"""numpy values in the codec: NDArrays of the eleven dtypes both ways, as raw bytes (no element is
boxed), typed arrays read as numpy arrays, numpy scalars as numbers, the rest as references."""

from __future__ import annotations

import time

import numpy as np
import pytest

from splice_module_server import decoder
from splice_module_server.codec import decode, encode
from splice_module_server.values import NDARRAY_DTYPES, NDArray, RemoteRef

DTYPES = sorted(NDARRAY_DTYPES)


def sample(dtype: str) -> np.ndarray:
    if dtype == "bool":
        return np.array([[True, False, True], [False, False, True]])
    info = np.finfo(dtype) if dtype.startswith("float") else np.iinfo(dtype)
    return np.array([[info.min, 0, 1], [info.max, 2, 3]], dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_ndarray_of_each_dtype_travels_both_ways(dtype: str) -> None:
    a = sample(dtype)
    data = encode(a)
    assert data[:4] == b"\xd4\x07\x00\x93"
    assert data.endswith(a.astype(a.dtype.newbyteorder("<")).tobytes())
    back = decode(data)
    assert back.dtype == a.dtype and back.shape == a.shape and np.array_equal(back, a)
    assert back.flags.writeable and back.flags.c_contiguous


def test_big_endian_and_non_contiguous_arrays_are_written_little_endian_in_c_order() -> None:
    a = np.arange(12, dtype=">i4").reshape(3, 4).T
    back = decode(encode(a))
    assert back.dtype == np.dtype("int32") and np.array_equal(back, a)


def test_a_zero_dimensional_array_keeps_its_empty_shape() -> None:
    assert encode(np.array(7, dtype="int32")).hex() == "d4070093a5696e74333290c40407000000"
    assert decode(encode(np.array(7.5))).shape == ()


def test_bool_elements_other_than_0_and_1_read_as_true() -> None:
    assert decode(bytes.fromhex("d4070093a4626f6f6c9102c4020200")).tolist() == [True, False]


def test_arrays_of_other_dtypes_and_subclasses_travel_as_references() -> None:
    made: list[object] = []

    def export(value: object) -> RemoteRef:
        made.append(value)
        return RemoteRef("s", len(made), "object", type(value).__name__)

    values = [
        np.array([1j]),
        np.array(["a"]),
        np.array([1], dtype="float16"),
        np.ma.array([1, 2], mask=[0, 1]),
    ]
    assert all(isinstance(v, RemoteRef) for v in decode(encode(values, export)))
    assert len(made) == 4


def test_numpy_scalars_are_numbers() -> None:
    assert decode(encode([np.float64(1.5), np.int64(2**40), np.uint64(2**64 - 1), np.bool_(True)])) == [
        1.5,
        2**40,
        2**64 - 1,
        True,
    ]
    assert encode(np.float32(0.5)) == encode(0.5)
    assert encode(np.int8(-1)) == b"\xff"


@pytest.mark.parametrize(
    ("hex_", "dtype"),
    [
        ("c7047400807f00", "int8"),
        ("c70474010001ff", "uint8"),
        ("c704740200c8ff", "uint8"),
        ("c7057403d08a2c01", "int16"),
        ("c7057404ffff0001", "uint16"),
        ("c70974050000008070110100", "int32"),
        ("c7097406ffffffff70110100", "uint32"),
        ("c70974070000c03f002096c3", "float32"),
        ("c7117408000000000000f83f9c7500883ce437fe", "float64"),
        ("c711740900000000000000800000000000010000", "int64"),
        ("c711740affffffffffffffff2c01000000000000", "uint64"),
    ],
)
def test_typed_arrays_read_as_numpy_arrays_of_the_matching_dtype(hex_: str, dtype: str) -> None:
    a = decode(bytes.fromhex(hex_))
    assert isinstance(a, np.ndarray) and a.dtype == np.dtype(dtype) and a.flags.writeable


def test_without_numpy_an_ndarray_reads_as_an_ndarray_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoder, "numpy_or_none", lambda: None)
    data = bytes.fromhex("d4070093a5696e74333290c40407000000")
    value = decode(data)
    assert value == NDArray("int32", (), b"\x07\x00\x00\x00")
    assert encode(value) == data


def test_a_million_float64_elements_are_encoded_and_decoded_at_memory_speed() -> None:
    a = np.random.default_rng(1).random(1_000_000)
    start = time.perf_counter()
    data = encode(a)
    back = decode(data)
    elapsed = time.perf_counter() - start
    assert np.array_equal(back, a) and len(data) == 8_000_000 + 23
    # Element by element this takes seconds; as bytes, milliseconds (generous for a shared machine).
    assert elapsed < 0.5, f"{elapsed:.3f} s"
