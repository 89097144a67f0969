"""One object per event loop."""

from __future__ import annotations

import asyncio

from calls.server.per_loop import PerLoop


def test_each_loop_gets_its_own_object_once() -> None:
    made: list[object] = []

    def make() -> object:
        made.append(object())
        return made[-1]

    per_loop = PerLoop(make)

    async def twice() -> tuple[object, object]:
        return per_loop(), per_loop()

    first, again = asyncio.run(twice())
    other, _ = asyncio.run(twice())
    assert first is again
    assert other is not first
    assert len(made) == 2


def test_forget_hands_back_the_object_and_the_next_call_makes_a_new_one() -> None:
    per_loop: PerLoop[dict[str, object]] = PerLoop(dict)

    async def forget() -> tuple[object, object | None, object]:
        first = per_loop()
        return first, per_loop.forget(), per_loop()

    first, forgotten, second = asyncio.run(forget())
    assert forgotten is first
    assert second is not first


def test_peek_makes_nothing() -> None:
    per_loop: PerLoop[dict[str, object]] = PerLoop(dict)

    async def peek() -> tuple[object | None, object, object | None]:
        before = per_loop.peek()
        made = per_loop()
        return before, made, per_loop.peek()

    before, made, after = asyncio.run(peek())
    assert before is None
    assert after is made
