"""What each ``demeter-storage`` command does (argument parsing lives in ``cli``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, Final, cast

import attrs

from demeter_storage.bootstrap import build_service
from demeter_storage.cli.output import UsageError, output_path, stdout_writer, write_atomically
from demeter_storage.cli.progress import CountingFile, Progress
from demeter_storage.domain.errors import StorageError, ValidationError
from demeter_storage.domain.images import SNIFF_BYTES, sniff_image_type
from demeter_storage.domain.keys import validate_key, validate_session_id
from demeter_storage.domain.records import ImageState
from demeter_storage.service.config import validate_expiry_hours
from demeter_storage.service.image_service import ImageService
from demeter_storage.service.schemas import ImageResponse, UploadRequest, converter

MAX_CONCURRENCY: Final = 64


Command = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]


@contextlib.asynccontextmanager
async def _service() -> AsyncIterator[ImageService]:
    service = await build_service()
    try:
        yield service
    finally:
        await service.aclose()


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str, sort_keys=True))


def _response_dict(response: ImageResponse) -> dict[str, Any]:
    return dict(converter.unstructure(response))


# upload


def collect_files(paths: list[str]) -> list[Path]:
    """The files named, and those under the directories named (hidden ones skipped).

    Raises:
        UsageError: a path is missing or a directory cannot be read.
    """
    found: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            try:
                walked = sorted(
                    p
                    for p in path.rglob("*")
                    if p.is_file() and not any(part.startswith(".") for part in p.parts[-1:])
                )
            except PermissionError as exc:
                raise UsageError(f"cannot read directory {exc.filename or path}") from exc
            if not os.access(path, os.R_OK | os.X_OK):
                raise UsageError(f"cannot read directory {path}")
            found.extend(walked)
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"no such file or directory: {path}")
    return found


def _sniff(path: Path) -> str | None:
    with path.open("rb") as file:
        return sniff_image_type(file.read(SNIFF_BYTES))


async def upload(args: argparse.Namespace) -> int:
    """Upload files and directories; skip (and report) what is not an image."""
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be from 1 to {MAX_CONCURRENCY}")
    files = collect_files(args.paths)
    if not files:
        raise UsageError("no files to upload")
    progress = Progress(sum(f.stat().st_size for f in files), len(files))
    failures = 0
    slots = asyncio.Semaphore(args.concurrency)

    async def one(service: ImageService, path: Path) -> None:
        nonlocal failures
        async with slots:
            try:
                content_type = await asyncio.to_thread(_sniff, path)
                if content_type is None:
                    raise ValidationError("not an image (JPEG, PNG, WebP, TIFF or HEIC/HEIF)")
                with path.open("rb") as raw:
                    data = cast("IO[bytes]", CountingFile(raw, progress))
                    if args.viz:
                        response = await service.upload_visualization(
                            data, args.session, path.name, content_type=content_type
                        )
                    else:
                        size = os.fstat(raw.fileno()).st_size
                        request = UploadRequest(path.name, content_type, size=size)
                        response = await service.upload_original(data, args.session, request)
            except (StorageError, OSError) as exc:
                failures += 1
                _clear_line(progress)
                print(f"demeter-storage: skipped {path}: {exc}", file=sys.stderr)
                return
            finally:
                progress.file_done()
                progress.draw()
        if args.json:
            _clear_line(progress)
            _print_json(_response_dict(response))
        elif not progress.enabled:
            print(f"{response.s3_key}\t{response.image_id}\t{response.size}")

    validate_session_id(args.session)  # before any byte moves: one bad id fails them all
    async with _service() as service:
        await asyncio.gather(*(one(service, path) for path in files))
    progress.finish()
    if progress.enabled and not args.json:
        print(f"uploaded {len(files) - failures} of {len(files)} file(s)")
    return 1 if failures else 0


def _clear_line(progress: Progress) -> None:
    if progress.enabled:
        progress.stream.write("\r\033[K")


# download, presign


async def download(args: argparse.Namespace) -> int:
    """Download an object, verified, to a file (written whole or not at all) or stdout.

    On stdout the bytes are written as they arrive; a verification failure is
    reported (exit 1) after them, so a reader must discard what it got then.
    """
    if args.output == "-":
        write = stdout_writer()  # a closed stdout is bad usage, found before any I/O
        async with _service() as service:
            async for chunk in service.stream_original(args.key, args.bucket):
                write(chunk)
        return 0
    target = output_path(args.key, args.output)
    async with _service() as service:
        await write_atomically(target, service.stream_original(args.key, args.bucket))
    print(f"wrote {target}", file=sys.stderr)
    return 0


async def presign(args: argparse.Namespace) -> int:
    """Print a presigned GET (or, with ``--put``, PUT) URL.

    A PUT URL pins ``--content-type`` and only creates, so it is refused for a
    key an image owns; the headers its request must send go to stderr (or into
    the ``--json`` object).
    """
    if args.put and args.content_type is None:
        raise UsageError("--put needs --content-type TYPE: the type the URL will accept")
    if args.content_type is not None and not args.put:
        raise UsageError("--content-type is for --put URLs only")
    async with _service() as service:
        hours = args.hours if args.hours is not None else service.config.default_expiry_hours
        if args.put:
            validate_expiry_hours(hours)
            store = service.store_for(args.bucket)
            key = validate_key(args.key)
            owner = await service.metadata.get_by_key(store.name, key)
            if owner is not None:
                raise UsageError(
                    f"{key!r} in {store.name!r} belongs to image {owner.image_id}; a PUT URL "
                    "only creates, so choose a free key (or delete that image first)"
                )
            signed = await store.presign(
                key, expires_in=hours * 3600, method="PUT", content_type=args.content_type
            )
            url, headers = signed.url, dict(signed.headers)
        else:
            url, headers = await service.generate_presigned_url(args.key, args.bucket, hours), {}
    method = "PUT" if args.put else "GET"
    if args.json:
        _print_json({"url": url, "method": method, "headers": headers, "expires_in": hours * 3600})
        return 0
    print(url)
    if headers:
        flags = " ".join(f"-H {shlex.quote(f'{name}: {value}')}" for name, value in headers.items())
        print(f"demeter-storage: send the PUT with these headers: {flags}", file=sys.stderr)
    return 0


# records


def _image_id(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


async def delete(args: argparse.Namespace) -> int:
    """Delete an image with its objects and records."""
    identifier = _image_id(args.image_id)
    if identifier is None:
        raise UsageError(f"not an image id: {args.image_id!r} (ids look like `ls` prints them)")
    async with _service() as service:
        if not await service.delete_image(identifier):
            print(f"demeter-storage: no image {identifier}", file=sys.stderr)
            return 1
    print(f"deleted {identifier}")
    return 0


async def list_images(args: argparse.Namespace) -> int:
    """List ready images, of one session or all."""
    async with _service() as service:
        if args.session is not None:
            responses: list[ImageResponse] = []
            cursor: str | None = None
            while True:
                page = await service.list_session_images(args.session, limit=1000, cursor=cursor)
                responses.extend(page.items)
                if (cursor := page.next_cursor) is None:
                    break
        else:
            records = [r async for r in service.metadata.records() if r.state is ImageState.READY]
            records.sort(key=lambda r: (r.bucket, r.key))
            responses = [ImageResponse.from_record(r) for r in records]
    for response in responses:
        if args.json:
            _print_json(_response_dict(response))
        else:
            print(f"{response.image_id}  {response.size:>10}  {response.bucket}/{response.s3_key}")
    return 0


async def info(args: argparse.Namespace) -> int:
    """Describe one image, found by id or by key."""
    async with _service() as service:
        identifier = _image_id(args.image)
        if identifier is None:
            for store in (service.originals, service.visualizations):
                record = await service.metadata.get_by_key(store.name, args.image)
                if record is not None:
                    identifier = record.image_id
                    break
            else:
                print(f"demeter-storage: no image with key {args.image!r}", file=sys.stderr)
                return 1
        response = await service.get_image(identifier)
    _print_json(_response_dict(response))
    return 0


# maintenance


def _report(report: Any, as_json: bool) -> None:
    data = attrs.asdict(report)
    if as_json:
        _print_json(data)
        return
    for name, value in data.items():
        shown = len(value) if isinstance(value, list | tuple) else value
        print(f"{name.replace('_', ' ')}: {shown}")


async def reconcile(args: argparse.Namespace) -> int:
    """Finish abandoned uploads and interrupted deletes (or, with ``--orphans``, sweep)."""
    if args.orphans:
        return await _sweep_orphans(args)
    if args.delete or args.older_than is not None:
        raise UsageError("--delete and --older-than go with --orphans")
    async with _service() as service:
        report = await service.reconcile()
    _report(report, args.json)
    return 0 if report.clean else 1


async def _sweep_orphans(args: argparse.Namespace) -> int:
    """List (or, with ``--delete``, delete) the objects no record owns."""
    grace = None
    if args.older_than is not None:
        if not 0 <= args.older_than <= 24 * 3650:
            raise UsageError("--older-than must be from 0 to 87600 hours")
        grace = timedelta(hours=args.older_than)
    async with _service() as service:
        sweep = await service.sweep_orphans(older_than=grace, dry_run=not args.delete)
    if args.json:
        _print_json(attrs.asdict(sweep))
        return 0
    verb = "would delete" if sweep.dry_run else "deleted"
    for bucket, key in sweep.removed:
        print(f"{verb} {bucket}/{key}")
    for bucket, key, why in sweep.kept:
        print(f"kept {bucket}/{key}: {why}")
    hint = "; run again with --delete to delete them" if sweep.dry_run and sweep.removed else ""
    print(f"{verb} {len(sweep.removed)} orphan(s), kept {len(sweep.kept)}{hint}")
    return 0


async def audit(args: argparse.Namespace) -> int:
    """Compare every record with every object."""
    async with _service() as service:
        report = await service.audit()
    _report(report, args.json)
    return 0 if report.consistent else 1


async def lifecycle(args: argparse.Namespace) -> int:
    """Show, apply or enforce the lifecycle policy."""
    async with _service() as service:
        if args.action == "show":
            _print_json(
                {
                    "configured": service.lifecycle_policy().to_dict(),
                    "applied": {
                        store.name: (await store.get_lifecycle()).to_dict()
                        for store in (service.originals, service.visualizations)
                    },
                }
            )
        elif args.action == "apply":
            await service.apply_lifecycle()
            print("lifecycle policy applied to both buckets")
        else:
            removed = await service.sweep(dry_run=args.dry_run)
            verb = "would remove" if args.dry_run else "removed"
            for bucket, infos in removed.items():
                for item in infos:
                    print(f"{verb} {bucket}/{item.key}")
            print(f"{verb} {sum(len(infos) for infos in removed.values())} object(s)")
    return 0


async def serve(args: argparse.Namespace) -> int:
    """Serve the local store's signed URLs (see :mod:`demeter_storage.web.app`)."""
    from demeter_storage.cli.serving import serve_forever  # noqa: PLC0415 - needs uvicorn

    return await serve_forever(args.host, args.port, args.shutdown_timeout)


async def doctor(args: argparse.Namespace) -> int:
    """Check the settings and what they point at; print a fix for each problem."""
    from demeter_storage.cli.doctor import run_checks  # noqa: PLC0415 - rarely needed

    return await run_checks()


async def db(args: argparse.Namespace) -> int:
    """Upgrade, show or check the metadata database's schema (see :mod:`.db`)."""
    from demeter_storage.cli.db import run_db  # noqa: PLC0415 - rarely needed

    return await run_db(args)


SIGNAL_AWARE: Final = frozenset({"serve"})
"""Commands that stop on SIGINT and SIGTERM themselves (the others are cancelled)."""

COMMANDS: Final[dict[str, Command]] = {
    "upload": upload,
    "download": download,
    "presign": presign,
    "delete": delete,
    "ls": list_images,
    "info": info,
    "reconcile": reconcile,
    "audit": audit,
    "lifecycle": lifecycle,
    "serve": serve,
    "doctor": doctor,
    "db": db,
}
