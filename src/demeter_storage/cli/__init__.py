"""The ``demeter-storage`` command: the image service from a shell.

It builds the service with :func:`~demeter_storage.bootstrap.build_service`, so
with no configuration it works on the embedded default (objects and a SQLite
database under ``./demeter-data``) and on S3 once the environment says so.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or input. Errors
are one line on stderr; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from demeter_storage.cli.commands import COMMANDS, UsageError
from demeter_storage.domain.errors import (
    ConfigurationError,
    ImageAlreadyExists,
    StorageError,
    ValidationError,
)

PROG = "demeter-storage"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, exit code 2 (argparse prints the whole usage otherwise)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(prog=PROG, description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    upload = commands.add_parser("upload", help="upload photos (files or directories)")
    upload.add_argument("paths", nargs="+", metavar="PATH")
    upload.add_argument("--session", required=True, help="the field session id")
    upload.add_argument("--viz", action="store_true", help="upload as visualizations")
    upload.add_argument("--concurrency", type=int, default=4, help="uploads at once (1-64)")
    upload.add_argument("--json", action="store_true", help="one JSON object per image")

    download = commands.add_parser("download", help="download an object")
    download.add_argument("key")
    download.add_argument("-o", "--output", help="file to write (- for stdout)")
    download.add_argument("--bucket", help="the bucket (default: the originals')")

    presign = commands.add_parser("presign", help="print a presigned URL")
    presign.add_argument("key")
    presign.add_argument("--hours", type=int, default=None, help="lifetime, 1-168 hours")
    presign.add_argument("--put", action="store_true", help="a URL to upload to")
    presign.add_argument("--bucket", help="the bucket (default: the originals')")

    delete = commands.add_parser("delete", help="delete an image, its objects and its record")
    delete.add_argument("image_id")

    listing = commands.add_parser("ls", help="list images")
    listing.add_argument("--session", help="only this session")
    listing.add_argument("--json", action="store_true")

    info = commands.add_parser("info", help="describe an image by id or key")
    info.add_argument("image", metavar="IMAGE_ID|KEY")

    for name, text in (("reconcile", "finish abandoned uploads and deletes"), ("audit", "")):
        sub = commands.add_parser(name, help=text or "compare records with objects")
        sub.add_argument("--json", action="store_true")

    lifecycle = commands.add_parser("lifecycle", help="show, apply or enforce the policy")
    lifecycle.add_argument("action", choices=["show", "apply", "sweep"])
    lifecycle.add_argument("--dry-run", action="store_true", help="sweep: only report")

    serve = commands.add_parser("serve", help="serve the local store's signed URLs")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)

    commands.add_parser("doctor", help="check settings, credentials, endpoint and buckets")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(COMMANDS[args.command](args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # one readable line, whatever went wrong
        if args.debug:
            raise
        print(f"{PROG}: error: {_describe(exc)}", file=sys.stderr)
        return _exit_code(exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StorageError | UsageError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    return f"{type(exc).__name__}: {exc}"


def _exit_code(exc: BaseException) -> int:
    bad_input = (UsageError, ValidationError, ConfigurationError, ImageAlreadyExists, OSError)
    if isinstance(exc, bad_input) and not isinstance(exc, ConnectionError | TimeoutError):
        return 2
    return 1


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())
