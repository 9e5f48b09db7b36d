"""Never orphan, never dangle: failures at every step, then reconcile.

A scenario is a sequence of uploads and deletes. Any of them may be hit by a
fault: a crash at a named step (a BaseException, so no cleanup runs, as when
the process dies), an ordinary error at a step (cleanup runs), or an outage of
a store operation. After the scenario the faults heal, time passes, and
``reconcile()`` runs; then no object may exist without a ready row, no ready
row without its objects, and every upload and delete that reported success
must hold.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demeter_storage import StorageError
from demeter_storage.domain.errors import ImageNotFound
from demeter_storage.domain.records import ImageState
from demeter_storage.service.maintenance import Maintenance
from demeter_storage.service.schemas import UploadRequest
from tests.service.conftest import Stack, StackFactory, jpeg, png
from tests.service.faults import Crash, Faults, FaultyStore

UPLOAD_STEPS = ("record_written", "object_written", "thumbnail_written", "marked_ready")
DELETE_STEPS = ("marked_deleting", "objects_deleted", "rows_removed")


faults = st.one_of(
    st.none(),
    st.tuples(st.just("crash"), st.sampled_from(UPLOAD_STEPS + DELETE_STEPS)),
    st.tuples(st.just("error"), st.sampled_from(UPLOAD_STEPS + DELETE_STEPS)),
    st.tuples(st.just("outage"), st.sampled_from(["put", "delete", "*"])),
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["upload", "stream", "visualization", "delete"]),
        st.integers(min_value=0, max_value=2),
        faults,
    ),
    min_size=1,
    max_size=7,
)


async def _chunks(data: bytes) -> Any:
    for start in range(0, len(data), 700):
        yield data[start : start + 700]


async def _run(stack: Stack, faults_: Faults, ops: list[tuple[str, int, Any]]) -> dict[str, str]:
    """Run a scenario; return the originals known to exist at the end, key -> SHA-256."""
    stores = [stack.originals, stack.visualizations]
    known: dict[str, str] = {}
    ids: dict[int, Any] = {}
    for action, number, fault in ops:
        faults_.step = None
        for store in stores:
            assert isinstance(store, FaultyStore)
            store.failing = set()
        if fault is not None and fault[0] == "outage":
            for store in stores:
                assert isinstance(store, FaultyStore)
                store.failing = {fault[1]}
        elif fault is not None:
            faults_.step = fault
        key = f"s/{number}.jpg"
        photo = jpeg(color=(number * 40, 100, 50))
        try:
            if action in ("upload", "stream"):
                data = photo if action == "upload" else _chunks(photo)
                response = await stack.service.upload_original(
                    data, "s", UploadRequest(f"{number}.jpg", "image/jpeg")
                )
                ids[number] = response.image_id
                known[key] = hashlib.sha256(photo).hexdigest()
            elif action == "visualization" and number in ids:
                await stack.service.upload_visualization(
                    png(), "s", f"{number}-{len(known)}.png", parent_id=ids[number]
                )
            elif (
                action == "delete"
                and number in ids
                and await stack.service.delete_image(ids[number])
            ):
                known.pop(key, None)
                ids.pop(number)
        except Crash:
            known.pop(key, None)  # outcome unknown
        except (StorageError, RuntimeError):
            if action == "delete":
                known.pop(key, None)  # may or may not have gone through
    faults_.step = None
    for store in stores:
        assert isinstance(store, FaultyStore)
        store.failing = set()
    return known


async def _check_invariants(stack: Stack, known: dict[str, str]) -> None:
    stack.clock.advance(2 * 3600)
    report = await stack.service.reconcile()
    assert report.clean, report.failed
    audit = await stack.service.audit()
    assert audit.orphan_objects == ()
    assert audit.missing_objects == ()
    assert (audit.uploading, audit.deleting) == (0, 0)
    for record in await stack.rows():
        assert record.state is ImageState.READY
    for key, sha256 in known.items():
        data = await stack.service.download_original(key)
        assert hashlib.sha256(data).hexdigest() == sha256


def _scenario_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


async def _scenario(make_stack: StackFactory, ops: list[tuple[str, int, Any]]) -> None:
    faults_ = Faults()
    stack = await make_stack(wrap=FaultyStore, checkpoint=faults_.checkpoint)
    await _clear(stack)
    known = await _run(stack, faults_, ops)
    await _check_invariants(stack, known)


@pytest.mark.parametrize("stack_name", ["memory"])
@_scenario_settings(60)
@given(ops=operations)
async def test_after_reconcile_nothing_is_orphaned_or_dangles_in_memory(
    make_stack: StackFactory, ops: list[tuple[str, int, Any]]
) -> None:
    await _scenario(make_stack, ops)


@pytest.mark.parametrize("stack_name", ["local-sqlite"])
@_scenario_settings(30)
@given(ops=operations)
async def test_after_reconcile_nothing_is_orphaned_or_dangles_on_local_sqlite(
    make_stack: StackFactory, ops: list[tuple[str, int, Any]]
) -> None:
    await _scenario(make_stack, ops)


@pytest.mark.parametrize("stack_name", ["s3-postgres"])
@_scenario_settings(12)
@given(ops=operations)
async def test_after_reconcile_nothing_is_orphaned_or_dangles_on_s3_postgres(
    make_stack: StackFactory, ops: list[tuple[str, int, Any]]
) -> None:
    await _scenario(make_stack, ops)


async def _clear(stack: Stack) -> None:
    """Start from an empty table (the PostgreSQL schema is shared by the examples)."""
    ids = [record.image_id async for record in stack.metadata.records()]
    await stack.metadata.remove(ids)


async def test_concurrent_reconcilers_never_handle_a_row_twice(make_stack: StackFactory) -> None:
    faults_ = Faults()
    stack = await make_stack(wrap=FaultyStore, checkpoint=faults_.checkpoint)
    for number in range(12):
        faults_.step = ("crash", "object_written")
        with pytest.raises(Crash):
            await stack.service.upload_original(
                jpeg(), "s", UploadRequest(f"{number}.jpg", "image/jpeg")
            )
    stack.clock.advance(2 * 3600)
    workers = [
        Maintenance(
            stores={s.name: s for s in (stack.originals, stack.visualizations)},
            metadata=stack.metadata,
            config=stack.service.config,
            clock=stack.clock.now,
        )
        for _ in range(4)
    ]
    reports = await asyncio.gather(*(w.reconcile(claimant=f"w{i}") for i, w in enumerate(workers)))
    handled = [image_id for report in reports for image_id in report.abandoned_uploads]
    assert len(handled) == len(set(handled)) == 12
    assert await stack.is_empty()


async def test_fresh_uploads_in_progress_are_left_alone(make_stack: StackFactory) -> None:
    faults_ = Faults()
    stack = await make_stack(wrap=FaultyStore, checkpoint=faults_.checkpoint)
    faults_.step = ("crash", "object_written")
    with pytest.raises(Crash):
        await stack.service.upload_original(jpeg(), "s", UploadRequest("a.jpg", "image/jpeg"))
    stack.clock.advance(60)
    assert (await stack.service.reconcile()).abandoned_uploads == ()
    audit = await stack.service.audit()
    assert (audit.uploading, audit.orphan_objects) == (1, ())
    stack.clock.advance(3600)
    assert len((await stack.service.reconcile()).abandoned_uploads) == 1
    assert await stack.is_empty()


async def test_an_upload_deleted_while_it_ran_leaves_nothing(make_stack: StackFactory) -> None:
    stack: Stack | None = None

    async def delete_midway(step: str) -> None:
        if step == "object_written" and stack is not None:
            (record,) = await stack.rows()
            assert await stack.service.delete_image(record.image_id)

    stack = await make_stack(wrap=FaultyStore, checkpoint=delete_midway)
    with pytest.raises(StorageError, match="deleted while it ran"):
        await stack.service.upload_original(jpeg(), "s", UploadRequest("a.jpg", "image/jpeg"))
    assert await stack.is_empty()
    with pytest.raises(ImageNotFound):
        await stack.service.get_image("6b6d2b8a-6f5e-4a61-9a5b-3f1c1d2e3f40")


async def test_audit_reports_orphans_and_missing_objects(stack: Stack) -> None:
    response = await stack.service.upload_original(
        jpeg(), "s", UploadRequest("a.jpg", "image/jpeg")
    )
    await stack.originals.put("s/stray.jpg", jpeg(), content_type="image/jpeg")
    await stack.originals.delete("s/a.jpg")
    audit = await stack.service.audit()
    assert audit.orphan_objects == ((stack.originals.name, "s/stray.jpg"),)
    assert [(m.image_id, m.key) for m in audit.missing_objects] == [(response.image_id, "s/a.jpg")]
    assert not audit.consistent
