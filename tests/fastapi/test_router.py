"""The router on the in-memory service: every route's answer, and bad input refused whole."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from demeter_storage.service.image_service import ImageService
from demeter_storage.web.app import SignedUrlApp
from tests.fastapi.support import (
    PHOTO,
    PREFIX,
    PROBLEM,
    client_for,
    httpx,
    make_app,
    snapshot,
    upload,
)


@pytest.fixture
async def client(memory_image_service: ImageService) -> AsyncIterator[Any]:
    async for http in client_for(make_app(memory_image_service)):
        yield http


async def test_an_original_is_uploaded_described_listed_and_deleted(
    client: Any, memory_image_service: ImageService
) -> None:
    created = await upload(client, metadata='{"row": "12"}', idempotency_key="k-1")
    assert created.status_code == 201, created.text
    image = created.json()
    assert (image["s3_key"], image["size"]) == ("field-7/leaf.jpg", len(PHOTO))
    assert image["kind"] == "original"
    assert image["metadata"] == {"row": "12"}
    assert await memory_image_service.download_original("field-7/leaf.jpg") == PHOTO

    again = await upload(client, idempotency_key="k-1")
    assert again.status_code == 201
    assert again.json()["image_id"] == image["image_id"]

    got = await client.get(f"{PREFIX}/images/{image['image_id']}")
    assert got.status_code == 200
    assert got.json()["sha256"] == image["sha256"]

    listed = await client.get(f"{PREFIX}/sessions/field-7/images")
    assert [item["image_id"] for item in listed.json()["items"]] == [image["image_id"]]

    assert (await client.delete(f"{PREFIX}/images/{image['image_id']}")).status_code == 204
    gone = await client.delete(f"{PREFIX}/images/{image['image_id']}")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == PROBLEM
    assert gone.json()["status"] == 404
    assert await snapshot(memory_image_service) == ([], [])


async def test_the_file_parts_name_and_type_are_used_when_no_field_names_them(
    client: Any,
) -> None:
    created = await upload(client, name="from-part.jpg")
    assert created.status_code == 201
    assert (created.json()["filename"], created.json()["content_type"]) == (
        "from-part.jpg",
        "image/jpeg",
    )
    named = await upload(client, name="other.jpg", filename="chosen.jpg", content_type="image/jpeg")
    assert named.json()["filename"] == "chosen.jpg"


async def test_a_session_is_listed_a_page_at_a_time(client: Any) -> None:
    for index in range(3):
        assert (await upload(client, name=f"p{index}.jpg")).status_code == 201
    first = (await client.get(f"{PREFIX}/sessions/field-7/images", params={"limit": 2})).json()
    assert len(first["items"]) == 2
    rest = await client.get(
        f"{PREFIX}/sessions/field-7/images", params={"limit": 2, "cursor": first["next_cursor"]}
    )
    assert [item["filename"] for item in rest.json()["items"]] == ["p2.jpg"]
    assert rest.json()["next_cursor"] is None
    bad = await client.get(f"{PREFIX}/sessions/field-7/images", params={"cursor": "%%%"})
    assert bad.status_code == 422


async def test_a_visualization_is_linked_to_its_original(
    client: Any, memory_image_service: ImageService
) -> None:
    original = (await upload(client)).json()
    drawn = await client.post(
        f"{PREFIX}/sessions/field-7/visualizations",
        data={"parent_id": original["image_id"], "metadata": '{"model": "v3"}'},
        files={"file": ("boxes.jpg", PHOTO, "image/jpeg")},
    )
    assert drawn.status_code == 201, drawn.text
    assert drawn.json()["s3_key"] == "field-7/viz_boxes.jpg"
    assert drawn.json()["parent_id"] == original["image_id"]
    elsewhere = await client.post(
        f"{PREFIX}/sessions/other/visualizations",
        data={"parent_id": original["image_id"]},
        files={"file": ("boxes.jpg", PHOTO, "image/jpeg")},
    )
    assert elsewhere.status_code == 422
    assert (await client.delete(f"{PREFIX}/images/{original['image_id']}")).status_code == 204
    assert await snapshot(memory_image_service) == ([], [])


async def test_downloads_stream_ranges_and_answer_etags(client: Any) -> None:
    image = (await upload(client)).json()
    path = f"{PREFIX}/images/{image['image_id']}/content"
    whole = await client.get(path)
    assert whole.status_code == 200
    assert whole.content == PHOTO
    assert whole.headers["content-type"] == "image/jpeg"
    assert whole.headers["etag"] == f'"{image["sha256"]}"'
    assert 'filename="leaf.jpg"' in whole.headers["content-disposition"]

    part = await client.get(path, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == PHOTO[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(PHOTO)}"
    tail = await client.get(path, headers={"Range": "bytes=-5"})
    assert tail.content == PHOTO[-5:]
    beyond = await client.get(path, headers={"Range": f"bytes={len(PHOTO)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["content-range"] == f"bytes */{len(PHOTO)}"
    for ignored in ("bytes=5-1", "bytes=0-1,4-5", "items=0-1", "bytes=" + "9" * 40 + "-"):
        answer = await client.get(path, headers={"Range": ignored})
        assert (answer.status_code, answer.content) == (200, PHOTO), ignored

    cached = await client.get(path, headers={"If-None-Match": whole.headers["etag"]})
    assert (cached.status_code, cached.content) == (304, b"")
    stale = await client.get(path, headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200


async def test_a_presigned_url_lasts_1_to_168_hours(client: Any) -> None:
    image = (await upload(client)).json()
    made = await client.post(
        f"{PREFIX}/presigned-urls", json={"s3_key": image["s3_key"], "expiry_hours": 2}
    )
    assert made.status_code == 200, made.text
    assert "X-Demeter-Expires=7200" in made.json()["url"]
    assert made.json()["bucket"] == "demeter-photos-original"
    default = await client.post(f"{PREFIX}/presigned-urls", json={"s3_key": image["s3_key"]})
    assert default.json()["expiry_hours"] == 24
    for body in (
        {"s3_key": image["s3_key"], "expiry_hours": 0},
        {"s3_key": image["s3_key"], "expiry_hours": 169},
        {"s3_key": image["s3_key"], "expiry_hours": "soon"},
        {"s3_key": image["s3_key"], "bucket": "someone-elses"},
        {"s3_key": "../etc/passwd"},
        {"s3_key": "_staging/" + image["image_id"]},
        {"s3_key": image["s3_key"], "extra": 1},
    ):
        refused = await client.post(f"{PREFIX}/presigned-urls", json=body)
        assert refused.status_code == 422, body
        assert refused.headers["content-type"] == PROBLEM


async def test_a_direct_upload_is_begun_posted_and_completed(
    client: Any, memory_image_service: ImageService
) -> None:
    begun = await client.post(
        f"{PREFIX}/sessions/field-7/direct-uploads",
        json={"filename": "leaf.jpg", "content_type": "image/jpeg", "size": len(PHOTO)},
    )
    assert begun.status_code == 201, begun.text
    form = begun.json()
    store = memory_image_service.originals
    phone = httpx.ASGITransport(app=SignedUrlApp({store.name: store}))
    async with httpx.AsyncClient(transport=phone) as http:
        posted = await http.post(
            f"http://store.test/{store.name}",
            data=form["fields"],
            files={"file": ("leaf.jpg", PHOTO, "image/jpeg")},
        )
    assert posted.status_code == 204, posted.text
    path = f"{PREFIX}/direct-uploads/{form['image_id']}/complete"
    done = await client.post(path)
    assert done.status_code == 200, done.text
    assert done.json()["size"] == len(PHOTO)
    twice = await client.post(path)
    assert twice.status_code == 409
    assert twice.json()["image_id"] == form["image_id"]
    unknown = await client.post(f"{PREFIX}/direct-uploads/{uuid.uuid4()}/complete")
    assert unknown.status_code == 404
    taken = await client.post(
        f"{PREFIX}/sessions/field-7/direct-uploads",
        json={"filename": "leaf.jpg", "content_type": "image/jpeg", "size": 10},
    )
    assert taken.status_code == 409
    assert taken.json()["existing_image_id"] == form["image_id"]


async def test_a_taken_name_is_409_with_the_existing_image(client: Any) -> None:
    first = (await upload(client)).json()
    again = await upload(client)
    assert again.status_code == 409
    assert again.headers["content-type"] == PROBLEM
    problem = again.json()
    assert problem["existing_image_id"] == first["image_id"]
    assert (problem["title"], problem["status"]) == ("Conflict", 409)
    assert problem["instance"] == f"{PREFIX}/sessions/field-7/originals"


def _multipart(*parts: tuple[str, str | None, str | None, bytes], close: bool = True) -> bytes:
    body = b""
    for name, filename, content_type, data in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += b"--B\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
        if content_type is not None:
            body += f"Content-Type: {content_type}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    return body + (b"--B--\r\n" if close else b"")


FORM = "multipart/form-data; boundary=B"
FILE = ("file", "leaf.jpg", "image/jpeg", PHOTO)


@pytest.mark.parametrize(
    ("case", "content_type", "body"),
    [
        ("not a form", "image/jpeg", PHOTO),
        ("no boundary", "multipart/form-data", _multipart(FILE)),
        ("no file part", FORM, _multipart(("filename", None, None, b"a.jpg"))),
        ("a part after the file", FORM, _multipart(FILE, ("size", None, None, b"10"))),
        ("cut short", FORM, _multipart(FILE, close=False)),
        ("not even multipart", FORM, b"garbage without any boundary"),
        ("types disagree", FORM, _multipart(("content_type", None, None, b"image/png"), FILE)),
        ("not an image", FORM, _multipart(("file", "a.jpg", "image/jpeg", b"plain text"))),
        ("empty file", FORM, _multipart(("file", "a.jpg", "image/jpeg", b""))),
        ("no type at all", FORM, _multipart(("file", "a.jpg", None, PHOTO))),
        ("no name at all", FORM, _multipart(("file", None, "image/jpeg", PHOTO))),
        ("a bad filename", FORM, _multipart(("filename", None, None, b"../x.jpg"), FILE)),
        ("a thumbnail's name", FORM, _multipart(("file", "thumb_a.jpg", "image/jpeg", PHOTO))),
        ("size disagrees", FORM, _multipart(("size", None, None, b"10"), FILE)),
        ("size is no number", FORM, _multipart(("size", None, None, b"ten"), FILE)),
        ("metadata not JSON", FORM, _multipart(("metadata", None, None, b"{row"), FILE)),
        ("metadata refused", FORM, _multipart(("metadata", None, None, b'{"Row": "x"}'), FILE)),
        ("unknown field", FORM, _multipart(("colour", None, None, b"green"), FILE)),
        ("a field twice", FORM, _multipart(*[("size", None, None, b"1")] * 2, FILE)),
        ("a huge field", FORM, _multipart(("filename", None, None, b"a" * 20000), FILE)),
        ("bad idempotency key", FORM, _multipart(("idempotency_key", None, None, b"a b"), FILE)),
        ("bad disposition", FORM, b"--B\r\nContent-Disposition: attachment\r\n\r\nx\r\n--B--\r\n"),
    ],
)
async def test_bad_uploads_are_4xx_problems_and_store_nothing(
    client: Any, memory_image_service: ImageService, case: str, content_type: str, body: bytes
) -> None:
    answer = await client.post(
        f"{PREFIX}/sessions/field-7/originals", content=body, headers={"content-type": content_type}
    )
    assert answer.status_code == 422, (case, answer.text)
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["detail"]
    assert await snapshot(memory_image_service) == ([], [])


async def test_a_body_longer_than_the_limit_is_413_unread(
    client: Any, memory_image_service: ImageService
) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    answer = await client.post(
        f"{PREFIX}/sessions/field-7/originals",
        content=never(),
        headers={"content-type": FORM, "content-length": str(10**12)},
    )
    assert answer.status_code == 413
    assert answer.headers["content-type"] == PROBLEM
    assert await snapshot(memory_image_service) == ([], [])


async def test_a_file_beyond_the_limit_is_refused_while_it_streams(
    memory_image_service: ImageService,
) -> None:
    from demeter_storage.service.config import ServiceConfig  # noqa: PLC0415

    service = ImageService(
        originals=memory_image_service.originals,
        visualizations=memory_image_service.visualizations,
        metadata=memory_image_service.metadata,
        config=ServiceConfig(max_upload_bytes=len(PHOTO) - 1),
    )
    async for http in client_for(make_app(service)):

        async def chunked() -> AsyncIterator[bytes]:
            yield _multipart(FILE)

        answer = await http.post(  # no Content-Length: only the stream can tell
            f"{PREFIX}/sessions/field-7/originals",
            content=chunked(),
            headers={"content-type": FORM},
        )
        assert answer.status_code == 422
        assert "limit" in answer.json()["detail"]
    assert await snapshot(service) == ([], [])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/images/not-a-uuid"),
        ("GET", "/images/not-a-uuid/content"),
        ("DELETE", "/images/123"),
        ("POST", "/direct-uploads/xyz/complete"),
        ("GET", "/sessions/_staging/images"),
        ("GET", "/sessions/%2E%2E/images"),
        ("GET", "/sessions/s/images?limit=0"),
        ("GET", "/sessions/s/images?limit=1001"),
    ],
)
async def test_bad_ids_and_parameters_are_422_problems(client: Any, method: str, path: str) -> None:
    answer = await client.request(method, PREFIX + path)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.json()["status"] == 422


@pytest.mark.parametrize(
    "body",
    [
        {"filename": "a.jpg", "content_type": "image/jpeg", "size": 0},
        {"filename": "a.jpg", "content_type": "application/pdf", "size": 10},
        {"filename": "../a.jpg", "content_type": "image/jpeg", "size": 10},
        {"filename": "a.jpg", "content_type": "image/jpeg", "size": 10**12},
        {"filename": "a.jpg", "content_type": "image/jpeg"},
    ],
)
async def test_bad_direct_uploads_are_refused(
    client: Any, memory_image_service: ImageService, body: dict[str, Any]
) -> None:
    refused = await client.post(f"{PREFIX}/sessions/s/direct-uploads", json=body)
    assert refused.status_code == 422, refused.text
    assert await snapshot(memory_image_service) == ([], [])
