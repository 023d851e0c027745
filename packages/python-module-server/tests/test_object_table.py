"""ObjectTable: sessions, leases and limits, with the messages of the TypeScript table."""

from __future__ import annotations

import pytest

from splice_module_server.errors import Code, SpliceError
from splice_module_server.object_table import ObjectTable, ObjectTableOptions


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000.0

    def __call__(self) -> float:
        return self.ms


def table(clock: Clock, **limits: int) -> ObjectTable:
    return ObjectTable(ObjectTableOptions(lease_ms=1_000, **limits), now=clock)


def refused(action: object, code: Code = Code.RESOURCE_EXHAUSTED) -> SpliceError:
    with pytest.raises(SpliceError) as caught:
        action()  # type: ignore[operator]
    assert caught.value.code == code
    return caught.value


def test_gives_ids_counted_from_one_over_the_whole_server() -> None:
    t = table(Clock())
    assert [t.add("a", object()), t.add("b", object()), t.add("a", object())] == [1, 2, 3]
    assert t.stats() == (2, 3)


def test_a_reference_is_usable_only_in_its_session() -> None:
    t = table(Clock())
    thing = object()
    object_id = t.add("a", thing)
    assert t.get("a", object_id) is thing
    error = refused(lambda: t.get("b", object_id), Code.NOT_FOUND)
    assert error.message == f"remote reference {object_id} was released or its lease expired"


def test_release_frees_and_is_idempotent() -> None:
    t = table(Clock())
    ids = [t.add("a", object()) for _ in range(3)]
    t.release("a", [ids[0], ids[0], 999])
    t.release("nobody", ids)
    assert t.stats() == (1, 2)
    refused(lambda: t.get("a", ids[0]), Code.NOT_FOUND)


def test_frees_a_session_and_its_objects_when_its_lease_expires() -> None:
    clock = Clock()
    t = table(clock)
    object_id = t.add("a", object())
    t.touch("b")
    clock.ms += 999
    assert t.sweep() == 0
    t.touch("b")  # renewed: b lives on
    clock.ms += 1
    assert t.sweep() == 1
    assert t.stats() == (1, 0)
    refused(lambda: t.get("a", object_id), Code.NOT_FOUND)


def test_every_invocation_renews_the_lease() -> None:
    clock = Clock()
    t = table(clock)
    t.add("a", object())
    for _ in range(5):
        clock.ms += 600
        t.touch("a")
        assert t.sweep() == 0
    assert t.stats() == (1, 1)


def test_limits_objects_per_session_and_per_server() -> None:
    t = table(Clock(), max_objects_per_session=2, max_objects=3)
    t.add("a", object())
    t.add("a", object())
    error = refused(lambda: t.add("a", object()))
    assert error.message == (
        "session holds 2 remote references already (the per-session limit): release some before making more"
    )
    assert error.details == {"limit": "objects_per_session", "max": 2}
    t.add("b", object())
    error = refused(lambda: t.add("b", object()))
    assert error.message == (
        "the module-server holds 3 remote references over all sessions (its limit): release some before making more"
    )


def test_a_new_session_past_the_limit_takes_the_place_of_the_least_recently_used_empty_one() -> None:
    clock = Clock()
    t = table(clock, max_sessions=3)
    t.touch("empty-old")
    t.add("holder", object())
    t.touch("empty-new")
    t.touch("newcomer")
    assert t.stats() == (3, 1)
    t.touch("empty-new")  # still there: the older empty session made room
    t.add("empty-new", object())
    t.add("newcomer", object())
    error = refused(lambda: t.touch("one-more"))
    assert error.message == (
        "the module-server has 3 client sessions holding references (its limit): try again when leases expire"
    )
    clock.ms += 1_000
    t.touch("after-expiry")  # expired sessions are dropped first
    assert t.stats() == (1, 0)
