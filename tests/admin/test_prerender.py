"""The greeting admin: saving a greeting renders its audio before any caller asks for it."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import User
from django.core.cache import caches
from django.test import AsyncClient

from calls.models import Greeting
from calls.speech.cache import CACHE_ALIAS
from calls.speech.text import speech_key
from devtools.fake_deepgram import FakeDeepgram, fake_audio

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

VOICE = "aura-2-thalia-en"
TEXT = "Welcome to the bakery."


async def save_greeting(**changes: str) -> tuple[Greeting, str]:
    user = await User.objects.acreate_superuser("admin", "admin@example.com", "a-long-password-1")
    client = AsyncClient()
    await client.aforce_login(user)
    greeting = await Greeting.objects.aget(is_default=True)
    data = {"name": greeting.name, "say_text": "", "text": TEXT, "voice": VOICE, "is_default": "on"}
    response = await client.post(
        f"/admin/calls/greeting/{greeting.pk}/change/", {**data, **changes}, follow=True
    )
    assert response.status_code == 200
    return await Greeting.objects.aget(pk=greeting.pk), response.content.decode()


async def cached(voice: str, text: str) -> bytes | None:
    return await asyncio.to_thread(caches[CACHE_ALIAS].get, speech_key(voice, text))


async def test_saving_a_greeting_caches_its_audio(deepgram: FakeDeepgram) -> None:
    greeting, _ = await save_greeting()
    assert (greeting.voice, greeting.text) == (VOICE, TEXT)
    assert await cached(VOICE, TEXT) == fake_audio(VOICE, TEXT)
    assert [(r.model, r.text) for r in deepgram.requests] == [(VOICE, TEXT)]


async def test_a_deepgram_failure_keeps_the_greeting_and_says_so(deepgram: FakeDeepgram) -> None:
    deepgram.fail(401, times=5)
    greeting, page = await save_greeting()
    assert greeting.text == TEXT
    assert "could not render it yet" in page
    assert await cached(VOICE, TEXT) is None
