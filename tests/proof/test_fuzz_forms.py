"""Upload forms (presigned POST) against the signed-URL server: tampered forms store nothing.

``SignedUrlApp`` stores a posted file only if every signed field arrives as it
was signed, the form has not expired and the file has 1 to ``max_size`` bytes;
otherwise it answers 403 (signature, policy, expiry) or 400 (size, form) and
the store is unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from demeter_storage.adapters.memory.store import InMemoryImageStore
from tests.proof.strategies import JPEG, edits, fuzz_settings, mutate
from tests.proof.url_server import BASE, CONTENT, KEYS, Server

NEW_KEY = "forms/new photo.jpg"
MAX_SIZE = 64
SIGNED = ("key", "Content-Type", "policy", "x-demeter-signature")


async def _post(server: Server, draw: st.DataObject) -> None:
    bucket = draw.draw(st.sampled_from(sorted(server.stores)), label="bucket")
    how = draw.draw(
        st.sampled_from(
            [*SIGNED, "drop", "size", "expired", "other-secret", "other-bucket", "none"]
        ),
        label="tampering",
    )
    expires_in = draw.draw(st.integers(1, 3600), label="expires_in")
    signer = server.stores[bucket]
    if how == "other-secret":
        signer = InMemoryImageStore(bucket, base_url=f"{BASE}/{bucket}", clock=server.clock.now)
    form = await signer.presign_post(
        NEW_KEY, content_type="image/jpeg", max_size=MAX_SIZE, expires_in=expires_in
    )
    fields: dict[str, Any] = dict(form.fields)
    size = draw.draw(st.integers(1, MAX_SIZE), label="size")
    target, offset = bucket, 0
    if how in SIGNED:
        fields[how] = mutate(fields[how], draw.draw(edits, label="edits"))
    elif how == "drop":
        del fields[draw.draw(st.sampled_from(SIGNED), label="dropped")]
    elif how == "size":
        size = draw.draw(st.sampled_from([0, MAX_SIZE + 1, 10 * MAX_SIZE]), label="bad size")
    elif how == "expired":
        offset = draw.draw(st.integers(-5, 5), label="after expiry") + expires_in
    elif how == "other-bucket":
        target = next(name for name in server.stores if name != bucket)
    in_time = offset <= expires_in
    file = (JPEG * 8)[:size]
    server.clock.advance(offset)
    try:
        response = await server.client.post(
            f"/{target}", data=fields, files={"file": ("new.jpg", file, "image/jpeg")}
        )
    finally:
        server.clock.advance(-offset)
    same = fields == dict(form.fields) and target == bucket and how != "other-secret"
    event(f"{how}: {response.status_code}")
    stored = server.stores[bucket]
    if response.status_code == 204:
        assert same and in_time and 1 <= size <= MAX_SIZE, f"{how} {fields!r} stored"
        assert await stored.get(NEW_KEY) == file
        await stored.delete(NEW_KEY)
    else:
        assert response.status_code in (400, 403, 404), response.status_code
        assert not (same and in_time and 1 <= size <= MAX_SIZE), f"{how}: refused"
    for name, store in server.stores.items():
        assert [info.key async for info in store.list()] == sorted(KEYS), name
        for key in KEYS:
            assert await store.get(key) == CONTENT[key]


@fuzz_settings(weight=0.5)
@given(draw=st.data())
def test_the_server_stores_a_form_upload_only_as_signed(
    loop: asyncio.Runner, server: Server, draw: st.DataObject
) -> None:
    loop.run(_post(server, draw))
