"""The floors' voice webhook: check Twilio's signature and answer with TwiML opening the stream.

It does the HTTP work any Twilio server must do for a call, with no framework: read the form,
check `X-Twilio-Signature`, and answer `<Connect><Stream>` with the call's numbers as
`<Parameter>`s, as voicebridge's answer carries them.
"""

from __future__ import annotations

import os
from html import escape
from typing import Any
from urllib.parse import parse_qsl

from twilio.request_validator import RequestValidator

# The auth token the floors check signatures with, set by the benchmark for the daphne it starts.
AUTH_TOKEN_VARIABLE = "BENCH_FLOOR_TWILIO_AUTH_TOKEN"
_TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
    '  <Connect action="{action}">\n    <Stream url="{stream}">\n{parameters}'
    "    </Stream>\n  </Connect>\n</Response>\n"
)


def header(scope: dict[str, Any], name: bytes) -> str:
    """Return a request header's value, or "" when absent."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def checking() -> bool:
    """Whether signatures are checked: only when the benchmark set the token."""
    return bool(os.environ.get(AUTH_TOKEN_VARIABLE))


def signed(scope: dict[str, Any], url: str, params: dict[str, str]) -> bool:
    """Whether the request carries Twilio's signature of `url` and `params`."""
    token = os.environ.get(AUTH_TOKEN_VARIABLE, "")
    signature = header(scope, b"x-twilio-signature")
    return bool(token) and RequestValidator(token).validate(url, params, signature)


def twiml(host: str, params: dict[str, str]) -> str:
    """The TwiML answer that opens the call's Media Stream on this host."""
    parameters = "".join(
        f'      <Parameter name="{name}" value="{escape(params.get(key, ""))}"/>\n'
        for name, key in (("from", "From"), ("to", "To"), ("call", "CallSid"))
    )
    return _TWIML.format(
        action=f"http://{escape(host)}/voice/after-stream",
        stream=f"ws://{escape(host)}/twilio",
        parameters=parameters,
    )


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer one HTTP request: TwiML for a signed POST /voice, 403 or 404 otherwise."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    host = header(scope, b"host")
    params = dict(parse_qsl(body.decode("latin-1")))
    if scope["path"] != "/voice" or scope["method"] != "POST":
        status, text, kind = 404, "", "text/plain"
    elif not signed(scope, f"http://{host}/voice", params):
        status, text, kind = 403, "Twilio signature required.", "text/plain"
    else:
        status, text, kind = 200, twiml(host, params), "text/xml"
    payload = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind.encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
