"""Fault injection for boto3 clients through botocore's event hooks.

Handlers registered first on ``before-send`` run before moto's own (in-process)
or before the real HTTP send (SeaweedFS), so they can count requests or answer
in the server's place.

botocore runs *every* ``before-send`` handler and then takes the first answer,
so moto would still carry out a request we answered with a fault. An injected
answer therefore also points the request at an address moto does not serve:
a faulted request has no side effect, as when the server really failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error_response(status: int, code: str) -> AWSResponse:
    body = (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>injected {code}</Message></Error>"
    ).encode()
    return AWSResponse("https://injected", status, {"Content-Type": "application/xml"}, _Raw(body))


FAULTS: dict[str, Callable[[Any], Any]] = {
    "500": lambda request: error_response(500, "InternalError"),
    "SlowDown": lambda request: error_response(503, "SlowDown"),
    "connection reset": lambda request: (_ for _ in ()).throw(
        ConnectionClosedError(endpoint_url=request.url)
    ),
    "read timeout": lambda request: (_ for _ in ()).throw(
        ReadTimeoutError(endpoint_url=request.url)
    ),
}


class Requests:
    """Counts the requests a client sends, per operation, and injects faults."""

    def __init__(self, client: Any) -> None:
        self.sent: Counter[str] = Counter()
        self._faults: dict[str, Callable[[Any], Any]] = {}
        client.meta.events.register_first("before-send.s3", self._before_send)

    def _before_send(self, request: Any, event_name: str, **_: Any) -> Any:
        operation = event_name.rsplit(".", 1)[-1]
        self.sent[operation] += 1
        fault = self._faults.get(operation) or self._faults.get("*")
        if fault is None:
            return None
        answer = fault(request)
        if answer is not None:
            request.url = "http://fault-injected.invalid/"
        return answer

    def fail(self, operation: str, fault: Callable[[Any], Any]) -> None:
        """Answer every ``operation`` (``"*"`` for all) with ``fault``."""
        self._faults[operation] = fault

    def heal(self) -> None:
        """Stop injecting faults."""
        self._faults.clear()

    @property
    def total(self) -> int:
        return sum(self.sent.values())
