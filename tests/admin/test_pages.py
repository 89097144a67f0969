"""The admin: numbers routed to greetings, the call log and its CSV export, the Listen player."""

from __future__ import annotations

import csv
import io
import wave
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Permission, User
from django.test import AsyncClient, Client
from django.utils import timezone

from calls.models import Call, Greeting, PhoneNumber
from calls.records.queries import FALLBACK_GREETING
from calls.speech.audio import mulaw_to_pcm16
from devtools.fake_deepgram import FakeDeepgram, fake_audio

listen_db = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def greeting(name: str, text: str = "Thanks for calling.", **kwargs: object) -> Greeting:
    return Greeting.objects.create(name=name, text=text, **kwargs)


def stream_parameter(client: Client, to: str, name: str) -> str:
    response = client.post("/voice", {"CallSid": "CA1", "From": "+15550199999", "To": to})
    assert response.status_code == 200
    marker = f'<Parameter name="{name}" value="'
    body = response.content.decode()
    return body.split(marker, 1)[1].split('"', 1)[0]


# Per-number routing ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_number_added_in_the_admin_routes_its_calls(admin_client: Client) -> None:
    sales = greeting("Sales", "Sales, how can we help?")
    response = admin_client.post(
        "/admin/calls/phonenumber/add/", {"number": "+1 (555) 010-0001", "greeting": sales.pk}
    )
    assert response.status_code == 302, response.content.decode()
    assert PhoneNumber.objects.get().number == "+15550100001"

    default = Greeting.objects.get(is_default=True)
    assert stream_parameter(admin_client, "+15550100001", "greeting") == str(sales.pk)
    assert stream_parameter(admin_client, "+15550100002", "greeting") == str(default.pk)
    assert stream_parameter(admin_client, "", "greeting") == str(default.pk)


@pytest.mark.django_db
@pytest.mark.parametrize("number", ["5550100001", "+0555", "+1555010000123456", "+1555abc"])
def test_number_that_is_not_e164_is_refused(admin_client: Client, number: str) -> None:
    sales = greeting("Sales")
    response = admin_client.post(
        "/admin/calls/phonenumber/add/", {"number": number, "greeting": sales.pk}
    )
    assert response.status_code == 200
    assert "E.164" in response.content.decode()
    assert not PhoneNumber.objects.exists()


@pytest.mark.django_db
def test_a_number_routes_to_one_greeting_only(admin_client: Client) -> None:
    PhoneNumber.objects.create(number="+15550100001", greeting=greeting("Sales"))
    response = admin_client.post(
        "/admin/calls/phonenumber/add/",
        {"number": "+15550100001", "greeting": greeting("Support").pk},
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()


@listen_db
async def test_the_greeting_page_lists_its_numbers(deepgram: FakeDeepgram) -> None:
    support = await Greeting.objects.acreate(name="Support", text="Support here.")
    await PhoneNumber.objects.acreate(number="+442079460000", greeting=support)
    client = await staff_client()
    html = (await client.get(f"/admin/calls/greeting/{support.pk}/change/")).content.decode()
    assert "+442079460000" in html
    assert f"/admin/calls/phonenumber/?greeting__id__exact={support.pk}" in html
    default = await Greeting.objects.aget(is_default=True)
    html = (await client.get(f"/admin/calls/greeting/{default.pk}/change/")).content.decode()
    assert "No number is routed to this greeting." in html


@pytest.mark.django_db
def test_deleting_a_greeting_sends_its_numbers_back_to_the_default(admin_client: Client) -> None:
    sales = greeting("Sales")
    PhoneNumber.objects.create(number="+15550100001", greeting=sales)
    sales.delete()
    default = Greeting.objects.get(is_default=True)
    assert stream_parameter(admin_client, "+15550100001", "greeting") == str(default.pk)


# The call log ---------------------------------------------------------------------------------


@pytest.fixture
def calls() -> dict[str, Call]:
    sales = greeting("Sales")
    now = timezone.now()
    rows = {
        "done": Call.objects.create(
            call_sid="CAdone",
            from_number="+15550199999",
            to_number="+15550100001",
            greeting=sales,
            status=Call.Status.COMPLETED,
            started_at=now - timedelta(seconds=30),
            ended_at=now - timedelta(seconds=17, milliseconds=500),
            first_audio_ms=212.5,
            from_cache=True,
            playback_confirmed=True,
        ),
        "failed": Call.objects.create(
            call_sid="CAfailed",
            from_number='=HYPERLINK("http://x")',
            to_number="+15550100002",
            status=Call.Status.FAILED,
            started_at=now - timedelta(seconds=10),
            ended_at=now,
            error="Deepgram answered 401: Invalid credentials.",
        ),
        "live": Call.objects.create(
            call_sid="CAlive",
            from_number="+15550188888",
            to_number="+15550100001",
            greeting=sales,
            started_at=now,
        ),
    }
    return rows


def listed(client: Client, query: str = "") -> set[str]:
    response = client.get(f"/admin/calls/call/?{query}")
    assert response.status_code == 200
    return {call.call_sid for call in response.context["cl"].result_list}


@pytest.mark.django_db
def test_call_log_filters_and_search(admin_client: Client, calls: dict[str, Call]) -> None:
    sales = Greeting.objects.get(name="Sales")
    assert listed(admin_client) == {"CAdone", "CAfailed", "CAlive"}
    assert listed(admin_client, "status__exact=failed") == {"CAfailed"}
    assert listed(admin_client, f"greeting__id__exact={sales.pk}") == {"CAdone", "CAlive"}
    assert listed(admin_client, "to_number=%2B15550100002") == {"CAfailed"}
    assert listed(admin_client, "q=CAdone") == {"CAdone"}
    assert listed(admin_client, "q=%2B15550188888") == {"CAlive"}


@pytest.mark.django_db
def test_call_log_shows_every_column_and_is_read_only(
    admin_client: Client, calls: dict[str, Call]
) -> None:
    page = admin_client.get("/admin/calls/call/").content.decode()
    for heading in ("Duration (s)", "Time to first audio (ms)", "Served from cache"):
        assert heading in page
    assert "12.5" in page  # the finished call's duration in seconds
    assert admin_client.get("/admin/calls/call/add/").status_code == 403
    change = admin_client.post(
        f"/admin/calls/call/{calls['done'].pk}/change/", {"status": "failed"}
    )
    assert change.status_code == 403
    assert Call.objects.get(call_sid="CAdone").status == Call.Status.COMPLETED


@pytest.mark.django_db
def test_csv_export_downloads_the_selected_calls(
    admin_client: Client, calls: dict[str, Call]
) -> None:
    response = admin_client.post(
        "/admin/calls/call/",
        {
            "action": "export_csv",
            "_selected_action": [calls["done"].pk, calls["failed"].pk],
        },
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="calls-')
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [row["call_sid"] for row in rows] == ["CAfailed", "CAdone"]
    failed, done = rows
    assert done["from"] == "+15550199999"
    assert done["to"] == "+15550100001"
    assert done["greeting"] == "Sales"
    assert done["status"] == "completed"
    assert done["duration_s"] == "12.500"
    assert done["first_audio_ms"] == "212.5"
    assert (done["from_cache"], done["interrupted"], done["playback_confirmed"]) == (
        "True",
        "False",
        "True",
    )
    assert failed["greeting"] == ""
    assert failed["error"] == "Deepgram answered 401: Invalid credentials."
    # A caller-supplied value that looks like a formula stays text in a spreadsheet.
    assert failed["from"].startswith("'=")


# Listen ---------------------------------------------------------------------------------------


async def staff_client(*permissions: str) -> AsyncClient:
    def create() -> User:
        if not permissions:
            return User.objects.create_superuser("admin", "admin@example.com", "pw")
        user = User.objects.create_user("editor", "editor@example.com", "pw", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
        return user

    client = AsyncClient()
    await client.aforce_login(await sync_to_async(create)())
    return client


@listen_db
async def test_greeting_page_plays_the_saved_greeting(deepgram: FakeDeepgram) -> None:
    saved = await Greeting.objects.aget(is_default=True)
    client = await staff_client()
    page = await client.get(f"/admin/calls/greeting/{saved.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    audio = fake_audio(saved.voice, saved.text)
    assert '<audio id="greeting-audio" controls preload="metadata"' in html
    assert f"{len(saved.text)} characters, {len(audio) / 8000:.1f} s spoken" in html
    src = html.split('<audio id="greeting-audio" controls preload="metadata" src="', 1)[1]
    src = src.split('"', 1)[0].replace("&amp;", "&")
    assert src.startswith(f"/admin/calls/greeting/{saved.pk}/listen.wav?v=")

    wav = await client.get(src)
    assert wav.status_code == 200
    assert wav["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(wav.content)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (1, 2, 8000)
        assert reader.readframes(reader.getnframes()) == mulaw_to_pcm16(audio)
    # The page and the audio together cost one Deepgram request; playing again costs none.
    assert (await client.get(src)).status_code == 200
    assert len(deepgram.requests) == 1


@listen_db
async def test_listening_to_an_edit_asks_deepgram_once(deepgram: FakeDeepgram) -> None:
    saved = await Greeting.objects.aget(is_default=True)
    client = await staff_client()
    await client.get(f"/admin/calls/greeting/{saved.pk}/listen.wav")
    saved.text = "We are closed for the holidays."
    await saved.asave()
    wav = await client.get(f"/admin/calls/greeting/{saved.pk}/listen.wav")
    with wave.open(io.BytesIO(wav.content)) as reader:
        assert reader.getnframes() == len(fake_audio(saved.voice, saved.text))
    assert [r.text for r in deepgram.requests] == [
        FALLBACK_GREETING.text,
        "We are closed for the holidays.",
    ]


@listen_db
async def test_a_deepgram_error_reads_as_a_message_not_a_broken_player(
    deepgram: FakeDeepgram,
) -> None:
    deepgram.fail(401, times=2)
    saved = await Greeting.objects.aget(is_default=True)
    client = await staff_client()
    page = await client.get(f"/admin/calls/greeting/{saved.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<audio" not in html
    assert "Deepgram could not speak this: Deepgram answered 401" in html
    assert "check DEEPGRAM_API_KEY" in html
    wav = await client.get(f"/admin/calls/greeting/{saved.pk}/listen.wav")
    assert wav.status_code == 502
    assert "check DEEPGRAM_API_KEY" in wav.content.decode()


@listen_db
async def test_listening_needs_permission_to_view_greetings(deepgram: FakeDeepgram) -> None:
    saved = await Greeting.objects.aget(is_default=True)
    url = f"/admin/calls/greeting/{saved.pk}/listen.wav"
    anonymous = await AsyncClient().get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/admin/login/")
    assert (await (await staff_client("view_call")).get(url)).status_code == 404
    assert (await (await staff_client()).get(url.replace(str(saved.pk), "999"))).status_code == 404
    assert deepgram.requests == []


@listen_db
async def test_the_add_page_asks_to_save_first(deepgram: FakeDeepgram) -> None:
    page = await (await staff_client()).get("/admin/calls/greeting/add/")
    assert "Save the greeting to listen to it." in page.content.decode()
    assert deepgram.requests == []
