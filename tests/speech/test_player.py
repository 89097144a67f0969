"""The player: what it holds on to once its call has ended."""

from __future__ import annotations

import gc
import weakref

from calls.speech.player import Outcome, Player


class Owner:
    """Holds a player that holds its methods, as the consumer does."""

    def __init__(self) -> None:
        self.player = Player(self.send, "MZ1", on_outcome=self.outcome)
        self.sent: list[str] = []

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def outcome(self, outcome: Outcome) -> None:
        pass


async def test_a_closed_player_lets_its_owner_be_freed_without_the_collector() -> None:
    owner = Owner()
    await owner.player.close()
    assert not await owner.player.interrupt()
    freed = weakref.ref(owner)
    gc.disable()
    try:
        del owner
        assert freed() is None
    finally:
        gc.enable()
