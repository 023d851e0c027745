"""The Python value mapping of the codec (README, "Values"), beyond the golden vectors: what each
Python type is written as, what each wire value is read as, and what is refused."""

from __future__ import annotations

import array
import datetime as dt
import enum
import errno
import math

import pytest

from splice_module_server.codec import Decoder, decode, encode
from splice_module_server.errors import Code, SpliceError
from splice_module_server.values import (
    UNDEFINED,
    BigInt,
    DateValue,
    Kwargs,
    MapEntries,
    RemoteError,
    RemoteRef,
    SetItems,
    Slot,
)


def roundtrip(value: object) -> object:
    return decode(encode(value))


def refused(data: bytes | object, code: Code = Code.INVALID_ARGUMENT, *, writing: bool = False) -> str:
    with pytest.raises(SpliceError) as caught:
        encode(data) if writing else decode(data)  # type: ignore[arg-type]
    assert caught.value.code == code
    return caught.value.message


class Color(enum.IntEnum):
    RED = 1


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (0, "00"),
        (-(2**31), "d280000000"),
        (2**32 - 1, "ceffffffff"),
        (2**32, "cb41f0000000000000"),
        (2**53, "cb4340000000000000"),
        (2**53 + 1, "d40100ae3230303030303030303030303031"),
        (-(2**64), "d40100b22d3130303030303030303030303030303030"),
        (3.0, "03"),
        (-2.0, "fe"),
        (5e9, "cb41f2a05f20000000"),
        (-0.0, "cb8000000000000000"),
        (float("nan"), "cb7ff8000000000000"),
        (-float("nan"), "cb7ff8000000000000"),
        (math.inf, "cb7ff0000000000000"),
        (BigInt(5), "d40100a135"),
        (Color.RED, "01"),
        (True, "c3"),
        ((1, 2), "920102"),
        (bytearray(b"\x01"), "c40101"),
        (memoryview(b"\x01\x02"), "c4020102"),
        (UNDEFINED, "d40000"),
    ],
)
def test_writes_python_numbers_and_sequences_as_javascript_reads_them(value: object, hex_: str) -> None:
    assert encode(value).hex() == hex_


def test_reads_every_number_without_a_fraction_as_an_int_and_64_bit_integers_as_bigints() -> None:
    assert type(decode(bytes.fromhex("cb41f0000000000000"))) is int
    assert type(decode(bytes.fromhex("ca3f800000"))) is int
    assert type(decode(bytes.fromhex("cb3ff8000000000000"))) is float
    assert type(decode(bytes.fromhex("cf0000000000000001"))) is BigInt
    big = roundtrip(2**70)
    assert big == 2**70 and type(big) is BigInt
    assert encode(roundtrip(BigInt(1))) == encode(BigInt(1))


def test_writes_dicts_with_string_keys_as_plain_objects_in_javascript_order() -> None:
    assert encode({"b": 1, "2": 2, "a": 3, "10": 4}) == encode({"2": 2, "10": 4, "b": 1, "a": 3})
    assert encode({"b": 1, "2": 2}).hex() == "de0002a13202a16201"
    assert encode({"01": 1, "b": 2}).hex() == "de0002a2303101a16202"


def test_writes_other_dicts_as_maps_and_reads_maps_back_as_dicts() -> None:
    assert encode({1: "a"}).hex() == "d402009201a161"
    assert roundtrip({(1, 2): "t"}) == MapEntries([([1, 2], "t")])  # a tuple key comes back as a list
    assert roundtrip({1: "a", "k": 2}) == {1: "a", "k": 2}


def test_reads_a_map_python_cannot_hold_in_a_dict_as_map_entries() -> None:
    # new Map([[[1], "list key"]]) and new Map([[1, "one"], [true, "yes"]])
    unhashable = decode(bytes.fromhex("d40200929101a46c697374"))
    assert unhashable == MapEntries([([1], "list")])
    colliding = decode(encode(MapEntries([(1, "one"), (True, "yes")])))
    assert colliding == MapEntries([(1, "one"), (True, "yes")])
    assert encode(colliding) == encode(MapEntries([(1, "one"), (True, "yes")]))


def test_sets_travel_both_ways_and_unhashable_items_as_set_items() -> None:
    assert roundtrip({1, "x"}) == {1, "x"}
    assert roundtrip(frozenset({2})) == {2}
    assert roundtrip(SetItems([[1], [1]])) == SetItems([[1], [1]])


def test_dates_are_utc_instants_naive_ones_taken_as_utc() -> None:
    aware = dt.datetime(2026, 11, 22, 11, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    back = roundtrip(aware)
    assert back == dt.datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=dt.timezone.utc)
    assert back.tzinfo is dt.timezone.utc
    assert roundtrip(dt.datetime(2026, 11, 22, 10, 0)) == dt.datetime(
        2026, 11, 22, 10, tzinfo=dt.timezone.utc
    )
    assert roundtrip(dt.datetime(1969, 12, 31, 23, 59, 59, 999999)).microsecond == 999000
    assert encode(DateValue(math.nan)).hex() == "d4ffff"
    far = decode(encode(DateValue(8.64e15)))
    assert far == DateValue(8.64e15)


def test_pandas_timestamps_are_dates_and_nat_is_an_invalid_date() -> None:
    pd = pytest.importorskip("pandas")
    assert roundtrip(pd.Timestamp("2020-01-01T00:00:00.5Z")) == dt.datetime(
        2020, 1, 1, 0, 0, 0, 500000, tzinfo=dt.timezone.utc
    )
    assert encode(pd.NaT).hex() == "d4ffff"


def test_refuses_timestamps_of_another_length() -> None:
    refused(bytes.fromhex("d5ff0000"))


def test_exceptions_carry_name_message_stack_code_and_cause() -> None:
    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise ValueError("outer") from inner
    except ValueError as caught:
        error = roundtrip(caught)
    assert isinstance(error, RemoteError)
    assert (error.name, error.message) == ("ValueError", "outer")
    assert (
        error.stack is not None
        and "raise ValueError" in error.stack
        and error.stack.endswith("ValueError: outer\n")
    )
    assert isinstance(error.cause, RemoteError) and error.cause.name == "KeyError"
    assert error.__cause__ is error.cause
    os_error = roundtrip(FileNotFoundError(errno.ENOENT, "missing", "/x"))
    assert os_error.fields == {"errno": 2, "path": "/x", "code": "ENOENT"}


def test_an_http_status_and_primitive_attributes_become_fields() -> None:
    class HTTPError(Exception):
        def __init__(self) -> None:
            super().__init__("not found")
            self.status_code = 404
            self.url = "/x"
            self.response = object()

    assert roundtrip(HTTPError()).fields == {"code": 404, "status_code": 404, "url": "/x"}


def test_an_exception_group_sends_its_errors() -> None:
    group_class = pytest.importorskip("builtins").__dict__.get("ExceptionGroup")
    if group_class is None:
        pytest.skip("ExceptionGroup is Python 3.11+")
    error = roundtrip(group_class("all failed", [ValueError("one"), KeyError("two")]))
    assert [e.name for e in error.errors] == ["ValueError", "KeyError"]


def test_a_remote_error_goes_back_as_it_came() -> None:
    data = bytes.fromhex("d40300de0003a46e616d65a54572726f72a76d657373616765a16da56361757365de0001a377687901")
    assert encode(decode(data)) == data


def test_a_cause_that_cannot_be_sent_is_sent_as_its_description() -> None:
    error = ValueError("outer")
    error.__cause__ = RuntimeError("x")
    error.__cause__.__cause__ = error
    sent = roundtrip(error)
    assert sent.cause.cause == "an instance of ValueError"


def test_array_array_is_a_typed_array_and_decodes_back_without_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    from splice_module_server import decoder

    assert encode(array.array("h", [-30000, 300])).hex() == "c7057403d08a2c01"
    monkeypatch.setattr(decoder, "numpy_or_none", lambda: None)
    back = decode(bytes.fromhex("c7057403d08a2c01"))
    assert back == array.array("h", [-30000, 300])
    assert decode(bytes.fromhex("c70374100908")) == b"\x09\x08"


def test_references_slots_and_keyword_arguments_are_their_classes() -> None:
    ref = RemoteRef("s", 7, "object", "Matrix")
    assert roundtrip([ref, Slot(3), Kwargs({"num": 5})]) == [ref, Slot(3), Kwargs({"num": 5})]
    decoder = Decoder()
    decoder.decode(encode([ref, ref, Slot(1), Kwargs({})]))
    assert (decoder.ref_count, decoder.slot_count, decoder.kwargs_count) == (2, 1, 1)


def test_values_that_do_not_travel_by_value_go_to_the_export_hook() -> None:
    exported: list[object] = []

    def export(value: object) -> RemoteRef:
        exported.append(value)
        return RemoteRef("s", len(exported), "function" if callable(value) else "object", "x")

    thing = object()
    out = decode(encode({"f": len, "o": thing, "c": 1j}, export))
    assert [type(v) for v in out.values()] == [RemoteRef, RemoteRef, RemoteRef]
    assert exported == [len, thing, 1j]
    assert "no remote reference can be made" in refused(object(), writing=True)


def test_refuses_cycles_and_nesting_past_256_when_writing() -> None:
    cycle: list[object] = []
    cycle.append(cycle)
    assert "cyclic" in refused(cycle, writing=True)
    shared = [1]
    assert decode(encode([shared, shared])) == [[1], [1]]
    deep: list[object] = []
    for _ in range(255):
        deep = [deep]
    assert decode(encode(deep)) == deep
    assert "deeper than 256" in refused([deep], writing=True)


def test_an_object_of_more_than_65535_keys_cannot_be_written() -> None:
    refused({str(i): i for i in range(65536)}, Code.INTERNAL, writing=True)


def test_reading_is_bounded_by_the_depth_limit_not_by_the_stack() -> None:
    assert "deeper than 256" in refused(b"\x91" * 100_000 + b"\x90")
    assert "deeper than 256" in refused(bytes.fromhex("d4730091") * 300 + b"\x90")


@pytest.mark.parametrize(
    "hex_",
    [
        "c1",  # never used in msgpack
        "81c0a161",  # a nil key
        "8101a161",  # a number key
        "a2c328",  # invalid UTF-8
        "d40800d4020090",  # keyword arguments that are a Map, not a plain object
        "d40300d4020090",  # an error whose fields are a Map
        "d40500cf0000000000000001",  # a slot that is a bigint
        "dd00100000",  # an array longer than the payload
    ],
)
def test_refuses_what_a_strict_decoder_refuses(hex_: str) -> None:
    refused(bytes.fromhex(hex_))


def test_large_strings_and_bytes_keep_their_headers() -> None:
    text = "é" * 40_000
    assert roundtrip(text) == text
    blob = bytes(range(256)) * 400
    data = encode(blob)
    assert data[:5] == b"\xc6\x00\x01\x90\x00" and roundtrip(blob) == blob
