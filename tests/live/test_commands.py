"""Live call control: commands reach the consumer holding the call through the channel layer."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.core.cache import caches

from calls.live import commands, presence
from calls.models import Call, CallUtterance
from calls.records.queries import FALLBACK_GREETING
from calls.twilio.protocol import GREETING_MARK
from devtools.fake_deepgram import FakeDeepgram, fake_audio
from tests import frames
from tests.streams import audio_until_mark, hang_up, open_live_stream, played, receive

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

GREETING_AUDIO = fake_audio(FALLBACK_GREETING.voice, FALLBACK_GREETING.text)
TABLE_READY = "Your table is ready."


@pytest.fixture(autouse=True)
def no_live_calls() -> None:
    caches[presence.CACHE_ALIAS].clear()


async def utterances() -> list[CallUtterance]:
    return [u async for u in CallUtterance.objects.filter(call__call_sid=frames.CALL_SID)]


async def test_say_speaks_after_the_greeting_and_is_recorded(deepgram: FakeDeepgram) -> None:
    communicator = await open_live_stream()
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, GREETING_MARK)
    await played(communicator, GREETING_MARK)

    await commands.asay(frames.CALL_SID, TABLE_READY)
    audio, mark = await audio_until_mark(communicator)
    assert audio == fake_audio("aura-asteria-en", TABLE_READY)
    assert mark == "say-1"
    await played(communicator, mark)
    await hang_up(communicator)

    [said] = await utterances()
    assert (said.text, said.voice, said.interrupt, said.played) == (
        TABLE_READY,
        "aura-asteria-en",
        False,
        True,
    )
    assert (await Call.objects.aget(call_sid=frames.CALL_SID)).status == Call.Status.COMPLETED


async def test_say_while_the_greeting_plays_waits_for_it(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    await commands.asay(frames.CALL_SID, TABLE_READY, "aura-2-thalia-en")
    deepgram.release()
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, GREETING_MARK)
    assert await audio_until_mark(communicator) == (
        fake_audio("aura-2-thalia-en", TABLE_READY),
        "say-1",
    )
    await hang_up(communicator)
    [said] = await utterances()
    assert said.voice == "aura-2-thalia-en"
    assert said.played is False


async def test_say_with_interrupt_clears_the_greeting_first(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    assert (await receive(communicator))["event"] == "media"
    await commands.asay(frames.CALL_SID, TABLE_READY, interrupt=True)
    assert await receive(communicator) == {"event": "clear", "streamSid": frames.STREAM_SID}
    deepgram.release()
    assert await audio_until_mark(communicator) == (
        fake_audio("aura-asteria-en", TABLE_READY),
        "say-1",
    )
    await hang_up(communicator)
    assert [u.interrupt for u in await utterances()] == [True]


async def test_clear_stops_the_speech(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    assert (await receive(communicator))["event"] == "media"
    await commands.aclear(frames.CALL_SID)
    assert await receive(communicator) == {"event": "clear", "streamSid": frames.STREAM_SID}
    deepgram.release()
    assert await communicator.receive_nothing(timeout=0.3)
    await hang_up(communicator)


async def test_hangup_lets_queued_speech_play_then_closes(deepgram: FakeDeepgram) -> None:
    communicator = await open_live_stream()
    await commands.asay(frames.CALL_SID, TABLE_READY)
    await commands.ahangup(frames.CALL_SID)
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, GREETING_MARK)
    assert (await audio_until_mark(communicator))[1] == "say-1"
    await played(communicator, GREETING_MARK)
    # The last mark is not echoed yet: the caller is still hearing the speech.
    assert await communicator.receive_nothing(timeout=0.3)
    await played(communicator, "say-1")
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()

    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED
    assert call.playback_confirmed is True
    assert [u.played for u in await utterances()] == [True]
    assert not await presence.is_live(frames.CALL_SID)


async def test_a_call_no_worker_ever_held_is_not_live() -> None:
    for command in (commands.aclear, commands.ahangup):
        with pytest.raises(commands.CallNotLive):
            await command(frames.CALL_SID)
    with pytest.raises(commands.CallNotLive):
        await commands.asay(frames.CALL_SID, TABLE_READY)


async def test_a_call_that_ended_refuses_commands(deepgram: FakeDeepgram) -> None:
    communicator = await open_live_stream()
    await audio_until_mark(communicator)
    await hang_up(communicator)
    for command in (commands.aclear, commands.ahangup):
        with pytest.raises(commands.CallEnded):
            await command(frames.CALL_SID)
    with pytest.raises(commands.CallEnded):
        await commands.asay(frames.CALL_SID, TABLE_READY)


async def test_say_and_clear_after_hangup_are_refused(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    await commands.ahangup(frames.CALL_SID)
    # The hang-up waits for the greeting; the call takes nothing more meanwhile.
    for command in (commands.aclear, commands.ahangup):
        with pytest.raises(commands.CallEnded):
            await command(frames.CALL_SID)
    with pytest.raises(commands.CallEnded):
        await commands.asay(frames.CALL_SID, TABLE_READY)
    deepgram.release()
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, GREETING_MARK)
    await played(communicator, GREETING_MARK)
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()
    assert await utterances() == []


async def test_speech_past_the_calls_queue_bound_is_refused(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    assert (await receive(communicator))["event"] == "media"
    for n in range(commands.MAX_QUEUED_SAYS):
        await commands.asay(frames.CALL_SID, f"Item {n}.")
    with pytest.raises(commands.TooMuchQueued, match="utterances are already queued"):
        await commands.asay(frames.CALL_SID, "One too many.")
    await commands.aclear(frames.CALL_SID)
    assert (await receive(communicator))["event"] == "clear"
    await commands.asay(frames.CALL_SID, "x" * commands.MAX_QUEUED_CHARS)
    with pytest.raises(commands.TooMuchQueued, match="characters are already queued"):
        await commands.asay(frames.CALL_SID, "And this.")
    deepgram.release()
    assert (await audio_until_mark(communicator))[1] == f"say-{commands.MAX_QUEUED_SAYS + 1}"
    await hang_up(communicator)
    assert len(await utterances()) == commands.MAX_QUEUED_SAYS + 1


async def test_a_burst_of_says_is_spoken_or_refused_never_dropped(deepgram: FakeDeepgram) -> None:
    deepgram.hold()
    communicator = await open_live_stream()
    burst = 1000
    results = await asyncio.gather(
        *(commands.asay(frames.CALL_SID, f"Number {n}.") for n in range(burst)),
        return_exceptions=True,
    )
    accepted = [r for r in results if r is None]
    refused = [
        r for r in results if isinstance(r, commands.TooMuchQueued | commands.ControlUnavailable)
    ]
    assert len(accepted) + len(refused) == burst, {type(r) for r in results}
    assert len(accepted) == commands.MAX_QUEUED_SAYS
    deepgram.release()
    assert (await audio_until_mark(communicator))[1] == GREETING_MARK
    marks = [(await audio_until_mark(communicator))[1] for _ in accepted]
    assert marks == [f"say-{n}" for n in range(1, len(accepted) + 1)]
    await hang_up(communicator)
    assert len(await utterances()) == len(accepted)


@pytest.mark.parametrize("text", ["Table\x00 ready", "Table \ud800 ready"])
async def test_text_the_database_cannot_store_is_refused_and_the_call_goes_on(
    deepgram: FakeDeepgram, text: str
) -> None:
    communicator = await open_live_stream()
    with pytest.raises(commands.InvalidCommand):
        await commands.asay(frames.CALL_SID, text)
    # Sent past the check (an older worker, say), the call itself refuses it.
    reply = await command_to_consumer({"type": "call.say", "text": text, "voice": None})
    assert reply["verdict"] == "invalid"
    await commands.asay(frames.CALL_SID, TABLE_READY)
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, GREETING_MARK)
    assert (await audio_until_mark(communicator))[1] == "say-1"
    await hang_up(communicator)
    assert [u.text for u in await utterances()] == [TABLE_READY]


async def test_a_call_that_does_not_answer_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "REPLY_SECONDS", 0.2)
    layer = get_channel_layer()
    await presence.announce(frames.CALL_SID, await layer.new_channel("nobody"))
    try:
        with pytest.raises(commands.ControlUnavailable, match="did not confirm"):
            await commands.aclear(frames.CALL_SID)
    finally:
        await presence.withdraw(frames.CALL_SID)


async def command_to_consumer(message: dict[str, object]) -> dict:
    """Send a raw command to the call's consumer and return its reply."""
    layer = get_channel_layer()
    where = await presence.whereabouts(frames.CALL_SID)
    reply_to = await layer.new_channel("test-reply")
    await layer.send(where.channel, {**message, "reply_to": reply_to})
    async with asyncio.timeout(5):
        return await layer.receive(reply_to)


@pytest.mark.parametrize(
    ("text", "voice", "interrupt"),
    [
        ("", None, False),
        ("   ", None, False),
        ("Hi", "not-a-voice", False),
        ("Hi", None, "yes"),
        ("x" * (commands.MAX_SAY_CHARS + 1), None, False),
    ],
)
async def test_unusable_say_is_refused_before_sending(
    text: str, voice: str | None, interrupt: bool
) -> None:
    with pytest.raises(commands.InvalidCommand):
        await commands.asay(frames.CALL_SID, text, voice, interrupt=interrupt)
