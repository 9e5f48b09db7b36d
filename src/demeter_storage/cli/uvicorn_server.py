"""uvicorn as ``demeter-storage serve`` runs it: a signal stops it, and nothing else.

Imported only once ``uvicorn`` (the ``web`` extra) is known to be installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from types import FrameType

import uvicorn

from demeter_storage.web.app import Message, Receive, Scope, Send, SignedUrlApp

logger = logging.getLogger("demeter_storage.cli.serving")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StoppableServer(uvicorn.Server):
    """uvicorn's server, minus re-raising the stop signal once it has shut down.

    uvicorn re-raises a captured SIGINT or SIGTERM after its graceful shutdown:
    SIGTERM then killed the process before the stores were closed (exit -15),
    and SIGINT cancelled the closing itself (a traceback from the database
    pool, exit 1). Here a signal only stops the server; the caller closes the
    stores and returns.

    Attributes:
        signals: the stop signals received, in order.
    """

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.signals: list[int] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Stop on SIGINT or SIGTERM while serving; restore the previous handlers after."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        self.handle_exit(sig, frame)  # a second SIGINT forces the exit, as in uvicorn


class QuietAtShutdown:
    """The app, with requests cut off by the shutdown ending in a log line, not a traceback.

    Args:
        app: the signed-URL app.
        server: the server whose shutdown may cancel requests.
    """

    def __init__(self, app: SignedUrlApp, server: uvicorn.Server) -> None:
        self._app = app
        self._server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; a request the shutdown cancels is answered 503 if it can still be."""
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not self._server.should_exit:
                raise
            # The shutdown timeout ran out: the request ends here (the store
            # removes what a cut-off upload had written).
            logger.warning("%s %s was cut off by the shutdown", scope.get("method"), scope["path"])
            if scope["type"] == "http" and not started:
                body = b"the server is shutting down; retry the request\n"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 503,
                        "headers": [
                            (b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
