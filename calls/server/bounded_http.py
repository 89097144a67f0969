"""daphne's HTTP connections, bounded: oversized bodies refused unread, slow requests cut off."""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any, Protocol, cast

import daphne.server
from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from calls.server.request_bounds import RequestBounds

logger = logging.getLogger(__name__)

# Long enough for a client still sending its body to read the refusal before the socket closes.
LINGER_SECONDS = 2.0


# Twisted declares its interfaces' methods without self, which mypy reads wrongly without the
# zope plugin: these describe the parts of a delayed call and a TCP transport used here.
class _DelayedCall(Protocol):
    def active(self) -> bool: ...
    def cancel(self) -> None: ...


class _Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def loseWriteConnection(self) -> None: ...
    def abortConnection(self) -> None: ...
    def getPeer(self) -> object: ...


class BoundedChannel(HTTPChannel):
    """An HTTP/1.1 connection that refuses oversized bodies and cuts off slow requests."""

    bounds: RequestBounds
    body_limit = 0
    refused = False
    _deadline: _DelayedCall | None = None
    _linger: _DelayedCall | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.refused:
            return
        if self._deadline is None and not self._handlingRequest:
            self._deadline = self.callLater(self.bounds.read_timeout, self._too_slow)
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        # Twisted reuses one local for the request and its path, so mypy takes _path for a Request.
        self.body_limit = self.bounds.body_limit(cast(bytes, self._path))
        # Twisted has not stored a byte of the body yet: refuse before it does.
        if self.length is not None and self.length > self.body_limit:
            self.refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"Content-Length {self.length} over {self.body_limit} bytes",
            )
            return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if self.refused:
            return
        self._cancel(self._deadline)
        self._deadline = None
        super().allContentReceived()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancel(self._deadline)
        self._cancel(self._linger)
        super().connectionLost(reason)

    def refuse(self, status: HTTPStatus, reason: str) -> None:
        """Answer `status`, stop reading the request, and close once the client has had it."""
        self.refused = True
        self._cancel(self._deadline)
        self.setTimeout(None)
        body = json.dumps({"error": status.phrase}).encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        # daphne serves over TCP, whose transports can half-close.
        transport = cast(_Transport, self.transport)
        transport.write(head.encode() + body)
        # Closing outright with unread bytes queued resets the connection, and the client would
        # lose the answer: half-close, drop what still arrives, and abort after a moment.
        transport.loseWriteConnection()
        self._linger = self.callLater(LINGER_SECONDS, transport.abortConnection)
        method = getattr(self, "_command", b"-").decode("ascii", "replace")
        target = getattr(self, "_path", b"-")[:200].decode("ascii", "replace")
        logger.warning(
            "refused %s %s from %s with %d: %s",
            method,
            target,
            getattr(transport.getPeer(), "host", "?"),
            status.value,
            reason,
        )

    def _too_slow(self) -> None:
        self._deadline = None
        self.refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"request not received within {self.bounds.read_timeout:g} s",
        )

    @staticmethod
    def _cancel(call: _DelayedCall | None) -> None:
        if call is not None and call.active():
            call.cancel()


class BoundedRequest(WebRequest):
    """daphne's request, counting its body as it arrives (chunked bodies carry no length)."""

    received = 0

    def handleContentChunk(self, data: bytes) -> None:
        channel = cast(BoundedChannel, self.channel)
        if channel.refused:
            return
        self.received += len(data)
        if self.received > channel.body_limit:
            channel.refuse(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body past {channel.body_limit} bytes",
            )
            return
        super().handleContentChunk(data)


class BoundedHTTPFactory(HTTPFactory):
    """daphne's HTTP factory, building bounded connections with the configured idle timeout."""

    def __init__(self, server: Any) -> None:
        super().__init__(server)
        self.bounds = RequestBounds.from_settings()
        self.timeOut = self.bounds.idle_timeout

    def protocol(self) -> BoundedChannel:
        # A plain HTTP/1.1 channel: HTTP/2 is negotiated only over TLS, which the proxy ends.
        channel = BoundedChannel()
        channel.bounds = self.bounds
        return channel

    def buildProtocol(self, addr: Any) -> BoundedChannel:
        channel = cast(BoundedChannel, super().buildProtocol(addr))
        channel.requestFactory = BoundedRequest
        return channel


def install() -> None:
    """Make daphne serve HTTP through bounded connections (it has no option for these bounds)."""
    # daphne's server builds its factory from this name when it starts listening.
    daphne.server.HTTPFactory = BoundedHTTPFactory
