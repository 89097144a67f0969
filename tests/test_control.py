"""Live call control: commands reach the consumer holding the call through the channel layer."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from calls import control, live
from calls.fake_deepgram import FakeDeepgram, fake_audio
from calls.models import Call, CallUtterance
from tests import frames
from tests.streams import audio_until_mark, hang_up, open_live_stream, played, receive

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

GREETING_AUDIO = fake_audio("aura-asteria-en", "Hello, how are you today?")
TABLE_READY = "Your table is ready."


@pytest.fixture(autouse=True)
def no_live_calls() -> None:
    caches[live.CACHE_ALIAS].clear()


async def utterances() -> list[CallUtterance]:
    return [u async for u in CallUtterance.objects.filter(call__call_sid=frames.CALL_SID)]


async def test_say_speaks_after_the_greeting_and_is_recorded(deepgram: FakeDeepgram) -> None:
    communicator = await open_live_stream()
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, "greeting-end")
    await played(communicator, "greeting-end")

    await control.asay(frames.CALL_SID, TABLE_READY)
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
    await control.asay(frames.CALL_SID, TABLE_READY, "aura-2-thalia-en")
    deepgram.release()
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, "greeting-end")
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
    await control.asay(frames.CALL_SID, TABLE_READY, interrupt=True)
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
    await control.aclear(frames.CALL_SID)
    assert await receive(communicator) == {"event": "clear", "streamSid": frames.STREAM_SID}
    deepgram.release()
    assert await communicator.receive_nothing(timeout=0.3)
    await hang_up(communicator)


async def test_hangup_lets_queued_speech_play_then_closes(deepgram: FakeDeepgram) -> None:
    communicator = await open_live_stream()
    await control.asay(frames.CALL_SID, TABLE_READY)
    await control.ahangup(frames.CALL_SID)
    assert await audio_until_mark(communicator) == (GREETING_AUDIO, "greeting-end")
    assert (await audio_until_mark(communicator))[1] == "say-1"
    await played(communicator, "greeting-end")
    # The last mark is not echoed yet: the caller is still hearing the speech.
    assert await communicator.receive_nothing(timeout=0.3)
    await played(communicator, "say-1")
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()

    call = await Call.objects.aget(call_sid=frames.CALL_SID)
    assert call.status == Call.Status.COMPLETED
    assert call.playback_confirmed is True
    assert [u.played for u in await utterances()] == [True]
    assert not await live.is_live(frames.CALL_SID)


async def test_a_call_that_is_not_live_refuses_commands(deepgram: FakeDeepgram) -> None:
    with pytest.raises(control.CallNotLive):
        await control.asay(frames.CALL_SID, TABLE_READY)
    communicator = await open_live_stream()
    await audio_until_mark(communicator)
    await hang_up(communicator)
    for command in (control.aclear, control.ahangup):
        with pytest.raises(control.CallNotLive):
            await command(frames.CALL_SID)


@pytest.mark.parametrize(
    ("text", "voice", "interrupt"),
    [("", None, False), ("   ", None, False), ("Hi", "not-a-voice", False), ("Hi", None, "yes")],
)
async def test_unusable_say_is_refused_before_sending(
    text: str, voice: str | None, interrupt: bool
) -> None:
    with pytest.raises(control.InvalidCommand):
        await control.asay(frames.CALL_SID, text, voice, interrupt=interrupt)


def test_group_names_are_valid_for_any_call_sid() -> None:
    assert live.group_name("CA0123abc") == "call.CA0123abc"
    odd = live.group_name("CA with spaces/and ünïcode" * 10)
    assert odd.startswith("call.h") and len(odd) < 100 and odd.isascii()
