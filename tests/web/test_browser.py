"""The signed-URL server seen from a real headless Chromium, over HTTP on loopback."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from demeter_storage.web.app import Message, Receive, Scope, Send
from tests.support.browser import Chromium, elements_by_id, serve_pages
from tests.web.live_server import Server, presign

SAMPLE = Path(__file__).parents[2] / "docs" / "assets" / "sample-leaf.jpg"
SAMPLE_WIDTH = 640  # docs/assets/sample-leaf.jpg is 640 x 480


@attrs.frozen
class Answered:
    """One response of the signed-URL app: to whom, for what, with which status."""

    method: str
    path: str
    query: str
    status: int
    user_agent: str


class RecordingServer(Server):
    """The live server, recording every status its app answers with."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.answered: list[Answered] = []
        app = self.server.config.app

        async def recording(scope: Scope, receive: Receive, send: Send) -> None:
            async def record(message: Message) -> None:
                if message["type"] == "http.response.start":
                    headers = dict(scope["headers"])
                    self.answered.append(
                        Answered(
                            scope["method"],
                            scope["raw_path"].decode("latin-1"),
                            scope["query_string"].decode("latin-1"),
                            message["status"],
                            headers.get(b"user-agent", b"").decode("latin-1"),
                        )
                    )
                await send(message)

            await app(scope, receive, record if scope["type"] == "http" else send)

        self.server.config.app = recording  # uvicorn loads the app when it starts


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RecordingServer]:
    running = RecordingServer(tmp_path)
    with running:
        running.run(
            running.store.put("s1/sample-leaf.jpg", SAMPLE.read_bytes(), content_type="image/jpeg")
        )
        yield running


def _img(element_id: str, url: str) -> str:
    # Inline handlers: attached before the request starts, so no outcome is missed.
    return (
        f'<img id="{element_id}" src="{html.escape(url)}" '
        "onload=\"this.dataset.outcome='load'; this.dataset.width=this.naturalWidth\" "
        "onerror=\"this.dataset.outcome='error'; this.dataset.width=this.naturalWidth\">"
    )


@pytest.mark.chromium
def test_chromium_shows_a_signed_image_and_refuses_a_tampered_one(
    server: RecordingServer, chromium: Chromium
) -> None:
    good = presign(server, "s1/sample-leaf.jpg")
    signature = good.rsplit("=", 1)[1]
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert tampered.rsplit("=", 1)[1] != signature
    page = f"<!doctype html><title>signed</title>{_img('good', good)}{_img('tampered', tampered)}"

    with serve_pages({"/index.html": page}) as base:
        dom = chromium.dump_dom(f"{base}/index.html")

    images = elements_by_id(dom)
    assert images["good"]["data-outcome"] == "load", dom
    assert images["good"]["data-width"] == str(SAMPLE_WIDTH)
    assert images["tampered"]["data-outcome"] == "error", dom
    assert images["tampered"]["data-width"] == "0"
    # What the server answered, and that it was the browser asking.
    by_query = {(a.path, a.query): a for a in server.answered}
    path, query = good.split("/", 3)[3].split("?", 1)
    tampered_query = tampered.split("?", 1)[1]
    assert by_query[(f"/{path}", query)].status == 200
    assert by_query[(f"/{path}", tampered_query)].status == 403
    assert all(a.method == "GET" for a in server.answered)
    assert all("HeadlessChrome" in a.user_agent for a in server.answered)
