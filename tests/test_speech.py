"""Speech by key: one look-up and one Deepgram request however many callers ask together."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

from django.core.cache import caches

from calls import speech
from calls.fake_deepgram import FakeDeepgram, fake_audio
from calls.speech import Speech, open_keyed, speech_key

VOICE = "aura-asteria-en"
TEXT = "Welcome to the bakery."


async def heard(opened: Speech) -> bytes:
    audio = bytearray()
    async with aclosing(opened.chunks()) as chunks:
        async for chunk in chunks:
            audio += chunk
    return bytes(audio)


class Describer:
    """Stands in for the greeting's database read, counting how often it is asked."""

    def __init__(self, voice: str = VOICE, text: str = TEXT) -> None:
        self.voice = voice
        self.text = text
        self.asked = 0

    async def __call__(self) -> tuple[str, str]:
        self.asked += 1
        await asyncio.sleep(0.01)
        return self.voice, self.text


async def test_callers_arriving_together_share_one_lookup_and_one_request(
    deepgram: FakeDeepgram,
) -> None:
    describe = Describer()
    key = speech_key(VOICE, TEXT)
    opened = await asyncio.gather(*(open_keyed(key, describe) for _ in range(20)))
    audios = await asyncio.gather(*(heard(s) for s in opened))
    assert audios == [fake_audio(VOICE, TEXT)] * 20
    assert describe.asked == 1
    assert len(deepgram.requests) == 1
    assert not opened[0].from_cache


async def test_audio_in_the_shared_cache_needs_no_deepgram(deepgram: FakeDeepgram) -> None:
    key = speech_key(VOICE, TEXT)
    await asyncio.to_thread(caches[speech.CACHE_ALIAS].set, key, b"\x7f" * 400, None)
    opened = await open_keyed(key, Describer())
    assert opened.from_cache
    assert await heard(opened) == b"\x7f" * 400
    assert deepgram.requests == []
    # The next caller finds it in this process' memory without any look-up.
    describe = Describer()
    assert (await open_keyed(key, describe)).from_cache
    assert describe.asked == 0


async def test_a_greeting_edited_since_the_webhook_speaks_its_new_text(
    deepgram: FakeDeepgram,
) -> None:
    opened = await open_keyed(speech_key(VOICE, "The old words."), Describer(text=TEXT))
    assert await heard(opened) == fake_audio(VOICE, TEXT)
    assert [r.text for r in deepgram.requests] == [TEXT]


async def test_a_caller_leaving_does_not_cancel_the_others_lookup(
    deepgram: FakeDeepgram,
) -> None:
    key = speech_key(VOICE, TEXT)
    describe = Describer()
    leaving = asyncio.create_task(open_keyed(key, describe))
    staying = asyncio.create_task(open_keyed(key, describe))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await heard(await staying) == fake_audio(VOICE, TEXT)
    assert describe.asked == 1
