"""A hypothesis state machine: the in-memory repository is the model, yours must agree.

Every rule runs one operation of the
:class:`~demeter_storage.ports.MetadataRepository` port on the model and on the
repository under test and compares the outcomes (the value, or the type of
error); after every step both must hold the same records. Build a test case
from a factory of empty repositories::

    TestMyRepositoryMachine = metadata_state_machine(my_repository_factory).TestCase

where ``my_repository_factory()`` returns an async context manager yielding an
empty repository (and cleaning up after it).

The records stay within what the service writes: keys follow
:mod:`demeter_storage.domain.keys` (so no image takes a thumbnail's key),
visualizations belong to a ready original, names and idempotency keys are
drawn from small pools so that they collide, and time only moves forward, in
whole seconds.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from demeter_storage.adapters.memory.metadata import InMemoryMetadataRepository
from demeter_storage.domain.errors import StorageError
from demeter_storage.domain.keys import original_key, thumbnail_key, visualization_key
from demeter_storage.domain.records import ImageKind, ImageRecord, ImageState
from demeter_storage.ports import MetadataRepository

RepositoryFactory = Callable[[], AbstractAsyncContextManager[MetadataRepository]]

T0 = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
ORIGINALS = "demeter-photos-original"
VISUALIZATIONS = "demeter-photos-viz"
SESSIONS = ("s1", "s2")
NAMES = ("a.jpg", "b c.png")
IDEMPOTENCY_KEYS = (None, None, "retry-1", "retry-2")
PREFIXES = ("", "s1/", "s1/a", "s2/", "s3/")

sessions = st.sampled_from(SESSIONS)
names = st.sampled_from(NAMES)
seconds = st.integers(min_value=0, max_value=90)
claim_timeouts = st.sampled_from([timedelta(seconds=30), timedelta(minutes=10)])
states = st.sampled_from(list(ImageState))
metadata = st.dictionaries(st.sampled_from(("camera", "row")), st.sampled_from(("x", "7")))


async def _outcome(call: Awaitable[Any]) -> tuple[str, Any]:
    try:
        return "ok", await call
    except StorageError as exc:
        return "error", type(exc).__name__


def _by_id(records: Iterable[ImageRecord]) -> list[ImageRecord]:
    return sorted(records, key=lambda record: record.image_id)


def metadata_state_machine(factory: RepositoryFactory) -> type[RuleBasedStateMachine]:
    """Return a state machine class checking repositories made by ``factory`` against the model."""

    class MetadataStateMachine(RuleBasedStateMachine):
        """Random sequences of operations; the repository under test must match the model."""

        def __init__(self) -> None:
            super().__init__()
            self.runner = asyncio.Runner()
            self.context = factory()
            self.repository = self.runner.run(self.context.__aenter__())
            self.model = InMemoryMetadataRepository()
            self.now = T0
            self.ids: list[uuid.UUID] = []  # every id used so far, removed ones too

        def run(self, call: Coroutine[Any, Any, Any]) -> Any:
            return self.runner.run(call)

        def both(
            self, operation: Callable[[MetadataRepository], Awaitable[Any]]
        ) -> tuple[Any, Any]:
            """Run ``operation`` on the model, then the repository; their outcomes must agree."""
            expected = self.run(_outcome(operation(self.model)))
            actual = self.run(_outcome(operation(self.repository)))
            assert actual[0] == expected[0], f"model {expected}, repository {actual}"
            if expected[0] == "error":
                assert actual == expected
            return expected[1], actual[1]

        def tick(self, elapsed: int) -> datetime:
            """Move time forward by ``elapsed`` seconds and return the new time."""
            self.now += timedelta(seconds=elapsed)
            return self.now

        def pick_id(self, data: st.DataObject, label: str) -> uuid.UUID:
            """Mostly the id of a record that exists; now and then a removed or a new one."""
            live = [record.image_id for record in self.run(_records(self.model))]
            which = data.draw(st.integers(0, 9), label=f"{label}: 0 new, 1 any used, else live")
            if which == 0 or not self.ids:
                return uuid.uuid4()
            chosen: uuid.UUID = data.draw(
                st.sampled_from(live if which > 1 and live else self.ids), label=label
            )
            return chosen

        def new_record(
            self,
            data: st.DataObject,
            *,
            session: str,
            name: str,
            visualization: bool,
            direct: bool,
            meta: dict[str, str],
        ) -> ImageRecord:
            """An uploading record as the service writes it, created now."""
            parent_id = None
            parents: list[uuid.UUID] = []
            if visualization:
                parents = [
                    record.image_id
                    for record in self.run(_records(self.model))
                    if record.kind is ImageKind.ORIGINAL and record.state is ImageState.READY
                ]
                # Now and then a parent that does not exist: the repository must refuse it.
                if data.draw(st.integers(0, 9), label="parent missing") == 0:
                    parent_id = uuid.uuid4()
                elif parents:
                    parent_id = data.draw(st.sampled_from(parents), label="parent")
                else:
                    visualization = False  # no original is ready to take one
            # Now and then an id that is taken (or was): the repository must refuse it.
            # Not with a missing parent too: the port names no one error for both.
            reuse_id = (
                bool(self.ids)
                and (parent_id is None or parent_id in parents)
                and data.draw(st.integers(0, 9), label="reuse id") == 0
            )
            image_id = data.draw(st.sampled_from(self.ids)) if reuse_id else uuid.uuid4()
            idempotency_key = data.draw(st.sampled_from(IDEMPOTENCY_KEYS), label="idempotency")
            return ImageRecord(
                image_id=image_id,
                kind=ImageKind.VISUALIZATION if visualization else ImageKind.ORIGINAL,
                session_id=session,
                bucket=VISUALIZATIONS if visualization else ORIGINALS,
                key=_key(session, name, visualization=visualization, thumbnail=False),
                filename=name,
                content_type="image/jpeg",
                size=None,
                sha256=None,
                state=ImageState.UPLOADING,
                created_at=self.now,
                updated_at=self.now,
                parent_id=parent_id,
                metadata=meta,
                upload_expires_at=self.now + timedelta(seconds=60) if direct else None,
                idempotency_key=idempotency_key,
            )

        @initialize(data=st.data(), count=st.integers(0, 8))
        def seed(self, data: st.DataObject, count: int) -> None:
            """Start from a few records, most of them ready (random steps seldom get there)."""
            for _ in range(count):
                self.seed_one(data)

        def seed_one(self, data: st.DataObject) -> None:
            """Add one record and, three times in four, mark it ready."""
            record = self.new_record(
                data,
                session=data.draw(sessions, label="session"),
                name=data.draw(names, label="name"),
                visualization=data.draw(st.booleans(), label="visualization"),
                direct=data.draw(st.booleans(), label="direct"),
                meta={},
            )
            self.ids.append(record.image_id)
            self.both(lambda r: r.add(record))
            if data.draw(st.integers(0, 3), label="left uploading") == 0:
                return
            thumbnail = data.draw(st.booleans(), label="thumbnail")
            now = self.tick(data.draw(seconds, label="elapsed"))
            self.both(
                lambda r: r.mark_ready(
                    record.image_id,
                    size=1000,
                    sha256="cd" * 32,
                    thumbnail_key=thumbnail_key(record.session_id, record.filename)
                    if thumbnail
                    else None,
                    now=now,
                )
            )

        @rule(
            data=st.data(),
            session=sessions,
            name=names,
            visualization=st.booleans(),
            direct=st.booleans(),
            meta=metadata,
            elapsed=seconds,
        )
        def add(  # noqa: PLR0917 - hypothesis passes every drawn value
            self,
            data: st.DataObject,
            session: str,
            name: str,
            visualization: bool,
            direct: bool,
            meta: dict[str, str],
            elapsed: int,
        ) -> None:
            self.tick(elapsed)
            record = self.new_record(
                data,
                session=session,
                name=name,
                visualization=visualization,
                direct=direct,
                meta=meta,
            )
            self.ids.append(record.image_id)
            self.both(lambda r: r.add(record))

        @rule(
            data=st.data(),
            session=sessions,
            name=names,
            direct=st.booleans(),
            elapsed=seconds,
            claim_timeout=claim_timeouts,
            grace=st.none() | seconds,
        )
        def take_over(  # noqa: PLR0917 - hypothesis passes every drawn value
            self,
            data: st.DataObject,
            session: str,
            name: str,
            direct: bool,
            elapsed: int,
            claim_timeout: timedelta,
            grace: int | None,
        ) -> None:
            old_id = self.pick_id(data, "old id")
            now = self.tick(elapsed)
            record = self.new_record(
                data, session=session, name=name, visualization=False, direct=direct, meta={}
            )
            self.ids.append(record.image_id)
            deleting_before = None if grace is None else now - timedelta(seconds=grace)
            expected, actual = self.both(
                lambda r: r.take_over(
                    old_id,
                    record,
                    now=now,
                    claim_timeout=claim_timeout,
                    deleting_before=deleting_before,
                )
            )
            assert actual == expected

        @rule(data=st.data())
        def get(self, data: st.DataObject) -> None:
            image_id = self.pick_id(data, "id")
            expected, actual = self.both(lambda r: r.get(image_id))
            assert actual == expected

        @rule(
            visualization=st.booleans(),
            session=sessions,
            name=names,
            thumbnail=st.booleans(),
        )
        def get_by_key(self, visualization: bool, session: str, name: str, thumbnail: bool) -> None:
            bucket = VISUALIZATIONS if visualization else ORIGINALS
            key = _key(session, name, visualization=visualization, thumbnail=thumbnail)
            expected, actual = self.both(lambda r: r.get_by_key(bucket, key))
            assert actual == expected

        @rule(session=sessions, idempotency_key=st.sampled_from(IDEMPOTENCY_KEYS[2:]))
        def get_by_idempotency_key(self, session: str, idempotency_key: str) -> None:
            expected, actual = self.both(
                lambda r: r.get_by_idempotency_key(session, idempotency_key)
            )
            assert actual == expected

        @rule(
            data=st.data(),
            size=st.integers(0, 10**9),
            thumbnail=st.booleans(),
            etag=st.none() | st.just('"0123456789abcdef"'),
            elapsed=seconds,
        )
        def mark_ready(
            self,
            data: st.DataObject,
            size: int,
            thumbnail: bool,
            etag: str | None,
            elapsed: int,
        ) -> None:
            image_id = self.pick_id(data, "id")
            now = self.tick(elapsed)
            record = self.run(self.model.get(image_id))
            key = (
                thumbnail_key(record.session_id, record.filename) if record and thumbnail else None
            )
            expected, actual = self.both(
                lambda r: r.mark_ready(
                    image_id,
                    size=size,
                    sha256="ab" * 32,
                    thumbnail_key=key,
                    now=now,
                    etag=etag,
                )
            )
            assert actual == expected

        @rule(
            data=st.data(),
            from_state=st.none() | st.just(ImageState.UPLOADING),
            elapsed=seconds,
        )
        def mark_deleting(
            self, data: st.DataObject, from_state: ImageState | None, elapsed: int
        ) -> None:
            image_id = self.pick_id(data, "id")
            now = self.tick(elapsed)
            expected, actual = self.both(
                lambda r: r.mark_deleting(image_id, now=now, from_state=from_state)
            )
            assert _by_id(actual) == _by_id(expected)

        @rule(data=st.data(), count=st.integers(0, 3))
        def remove(self, data: st.DataObject, count: int) -> None:
            image_ids = [self.pick_id(data, "id") for _ in range(count)]
            self.both(lambda r: r.remove(image_ids))

        @rule(session=sessions, limit=st.integers(1, 4))
        def list_session_pages(self, session: str, limit: int) -> None:
            after: tuple[str, str] | None = None
            while True:
                expected, actual = self.both(
                    functools.partial(_page, session=session, limit=limit, after=after)
                )
                assert actual == expected
                if len(expected) < limit:
                    break
                after = (expected[-1].bucket, expected[-1].key)

        @rule(
            session=sessions,
            name=names,
            visualization=st.booleans(),
            limit=st.integers(1, 10),
        )
        def list_session_after(
            self, session: str, name: str, visualization: bool, limit: int
        ) -> None:
            after = (
                VISUALIZATIONS if visualization else ORIGINALS,
                _key(session, name, visualization=visualization, thumbnail=False),
            )
            expected, actual = self.both(
                lambda r: r.list_session(session, limit=limit, after=after)
            )
            assert actual == expected

        @rule(
            state=states,
            age=seconds,
            elapsed=seconds,
            claimant=st.sampled_from(["reconciler-1", "reconciler-2"]),
            limit=st.integers(1, 4),
            claim_timeout=claim_timeouts,
            judge_uploads_by_expiry=st.booleans(),
        )
        def claim(  # noqa: PLR0917 - hypothesis passes every drawn value
            self,
            state: ImageState,
            age: int,
            elapsed: int,
            claimant: str,
            limit: int,
            claim_timeout: timedelta,
            judge_uploads_by_expiry: bool,
        ) -> None:
            now = self.tick(elapsed)
            arguments: dict[str, Any] = {
                "state": state,
                "updated_before": now - timedelta(seconds=age),
                "now": now,
                "claimant": claimant,
                "claim_timeout": claim_timeout,
                "uploads_expired_before": now if judge_uploads_by_expiry else None,
            }
            # Records last changed at the same instant may be claimed in any
            # order: when the limit would split them, claim them all.
            candidates = self.run(_dry_run(self.model).claim(limit=10**6, **arguments))
            if len(candidates) > limit and (
                candidates[limit - 1].updated_at == candidates[limit].updated_at
            ):
                limit = len(candidates)
            expected, actual = self.both(lambda r: r.claim(limit=limit, **arguments))
            assert _by_id(actual) == _by_id(expected)

        @rule(data=st.data(), count=st.integers(0, 3))
        def release(self, data: st.DataObject, count: int) -> None:
            image_ids = [self.pick_id(data, "id") for _ in range(count)]
            self.both(lambda r: r.release(image_ids))

        @rule(
            data=st.data(),
            visualization=st.booleans(),
            prefix=st.sampled_from(PREFIXES),
            age=seconds,
            limit=st.integers(1, 4),
        )
        def expiry_candidates(
            self,
            data: st.DataObject,
            visualization: bool,
            prefix: str,
            age: int,
            limit: int,
        ) -> None:
            after = None
            if self.ids and not data.draw(st.booleans(), label="from the start"):
                after = self.pick_id(data, "after")
            bucket = VISUALIZATIONS if visualization else ORIGINALS
            created_before = self.now - timedelta(seconds=age)
            expected, actual = self.both(
                lambda r: r.expiry_candidates(
                    bucket=bucket,
                    prefix=prefix,
                    created_before=created_before,
                    limit=limit,
                    after=after,
                )
            )
            assert actual == expected

        @rule(data=st.data(), elapsed=seconds)
        def mark_expired(self, data: st.DataObject, elapsed: int) -> None:
            image_id = self.pick_id(data, "id")
            now = self.tick(elapsed)
            expected, actual = self.both(lambda r: r.mark_expired(image_id, now=now))
            assert actual == expected

        @invariant()
        def records_agree(self) -> None:
            expected = self.run(_records(self.model))
            actual = self.run(_records(self.repository))
            assert _by_id(actual) == _by_id(expected)

        def teardown(self) -> None:
            try:
                self.run(self.context.__aexit__(None, None, None))
            finally:
                self.runner.close()

    return MetadataStateMachine


def _key(session: str, name: str, *, visualization: bool, thumbnail: bool) -> str:
    """The key the service gives an image (or its thumbnail) of this name."""
    if thumbnail:
        return thumbnail_key(session, name)
    return visualization_key(session, name) if visualization else original_key(session, name)


def _page(
    repository: MetadataRepository, *, session: str, limit: int, after: tuple[str, str] | None
) -> Awaitable[list[ImageRecord]]:
    return repository.list_session(session, limit=limit, after=after)


def _dry_run(model: InMemoryMetadataRepository) -> InMemoryMetadataRepository:
    """A copy of the model to claim on: claims are all that ``claim`` changes."""
    dry = copy.copy(model)
    dry._claims = dict(model._claims)
    return dry


async def _records(repository: MetadataRepository) -> list[ImageRecord]:
    return [record async for record in repository.records()]
