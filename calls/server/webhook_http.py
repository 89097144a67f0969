"""Django's HTTP handling for Twilio's webhooks: a whole request in one worker-thread call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class WebhookHandler(ASGIHandler):
    """Serves a request with Django's middleware and view run synchronously, in one thread hop."""

    def __init__(self) -> None:
        # Django's ASGI handler runs the middleware in async mode: each sync middleware method
        # and the sync view would then be a hop of its own between the loop and a thread.
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            # Not the thread that database writes share: a webhook must not queue behind them.
            response = await sync_to_async(self._respond, thread_sensitive=False)(scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await sync_to_async(response.close, thread_sensitive=False)()
        finally:
            body_file.close()

    def _respond(self, scope: dict[str, Any], body_file: IO[bytes]) -> HttpResponseBase:
        """Run the request's signals, middleware and view; close it unless it streams."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, error_response = self.create_request(scope, body_file)
        response = error_response if request is None else self.get_response(request)
        # create_request() answers with an error response whenever it makes no request.
        assert response is not None
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        if not response.streaming:
            # Closing sends request_finished, which closes this thread's database connections.
            response.close()
        return response


def route_webhooks(paths: Collection[str], webhooks: ASGIApp, others: ASGIApp) -> ASGIApp:
    """An ASGI app sending HTTP requests for `paths` to `webhooks`, the rest to `others`."""
    wanted = frozenset(paths)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = webhooks if scope.get("path") in wanted else others
        await target(scope, receive, send)

    return app
