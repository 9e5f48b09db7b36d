"""The ``demeter-storage`` command: the image service from a shell.

It builds the service with :func:`~demeter_storage.bootstrap.build_service`, so
with no configuration it works on the embedded default (objects and a SQLite
database under ``./demeter-data``) and on S3 once the environment says so.

Exit codes (the table per command is in docs/cli.md): 0 success, 1 the
operation failed, 2 bad usage or input, 130 interrupted (SIGINT, Ctrl-C),
141 standard output closed early (as a command killed by SIGPIPE), 143
terminated (SIGTERM). Errors are one line on stderr; ``--debug`` shows the
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
from collections.abc import Sequence
from typing import Final, NoReturn

from demeter_storage.cli.commands import COMMANDS, SIGNAL_AWARE, Command
from demeter_storage.cli.output import UsageError
from demeter_storage.domain.errors import (
    ConfigurationError,
    ImageAlreadyExists,
    StorageError,
    ValidationError,
)

PROG = "demeter-storage"

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 128 + signal.SIGINT
EXIT_BROKEN_PIPE: Final = 128 + signal.SIGPIPE
EXIT_TERMINATED: Final = 128 + signal.SIGTERM


class Terminated(Exception):
    """The command was asked to stop with SIGTERM (and has cleaned up)."""


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
    presign.add_argument("--put", action="store_true", help="a URL to upload to (only creates)")
    presign.add_argument("--content-type", help="with --put: the type the URL pins (required)")
    presign.add_argument("--bucket", help="the bucket (default: the originals')")
    presign.add_argument("--json", action="store_true", help="URL, method, headers as JSON")

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
        if name == "reconcile":
            sub.add_argument(
                "--orphans",
                action="store_true",
                help="list the objects no record owns, older than the grace (a dry run)",
            )
            sub.add_argument("--delete", action="store_true", help="--orphans: delete them")
            sub.add_argument(
                "--older-than",
                type=float,
                metavar="HOURS",
                help="--orphans: the grace period (default DEMETER_ORPHAN_GRACE_SECONDS, 24 h)",
            )

    lifecycle = commands.add_parser("lifecycle", help="show, apply or enforce the policy")
    lifecycle.add_argument("action", choices=["show", "apply", "sweep"])
    lifecycle.add_argument("--dry-run", action="store_true", help="sweep: only report")

    serve = commands.add_parser("serve", help="serve the local store's signed URLs")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="on SIGINT/SIGTERM, seconds to let requests finish before cutting them off",
    )

    commands.add_parser("doctor", help="check settings, credentials, endpoint and buckets")

    db = commands.add_parser("db", help="upgrade, show or check the database's schema")
    db.add_argument("action", choices=["upgrade", "current", "check"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    args: argparse.Namespace | None = None
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.DEBUG if args.debug else logging.WARNING,
            format=f"{PROG}: %(levelname)s %(name)s: %(message)s",
        )
        command = COMMANDS[args.command]
        if args.command in SIGNAL_AWARE:
            code = asyncio.run(command(args))
        else:
            code = asyncio.run(_until_terminated(command, args))
        if sys.stdout is not None:
            sys.stdout.flush()  # here, so that a closed pipe is reported like any write's
        return code
    except (Exception, KeyboardInterrupt) as exc:  # one readable line, whatever went wrong
        debug = args.debug if args is not None else "--debug" in (argv or sys.argv)
        if debug:
            raise
        return _report(exc)


async def _until_terminated(command: Command, args: argparse.Namespace) -> int:
    """Run ``command``; SIGTERM cancels it as Ctrl-C does (so it cleans up), then exits 143."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    previous = signal.getsignal(signal.SIGTERM)
    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except (ValueError, RuntimeError):  # not the main thread: leave signals alone
        previous = None
    try:
        return await command(args)
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise
    finally:
        if previous is not None:
            loop.remove_signal_handler(signal.SIGTERM)
            signal.signal(signal.SIGTERM, previous)


def _report(exc: BaseException) -> int:
    if isinstance(exc, KeyboardInterrupt | Terminated):
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError) and _stdout_reader_gone():
        # `| head` closed the pipe: stop quietly, as commands killed by SIGPIPE do.
        _discard_stdout()
        return EXIT_BROKEN_PIPE
    print(f"{PROG}: error: {_describe(exc)}", file=sys.stderr)
    return _exit_code(exc)


def _stdout_reader_gone() -> bool:
    """Whether standard output is a pipe or socket whose reader has gone (POLLERR/POLLHUP)."""
    try:
        fd = sys.__stdout__.fileno() if sys.__stdout__ is not None else 1
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError):
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ is not None else 1)
        os.close(devnull)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, StorageError | UsageError):
        return str(exc)
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or exc}: {exc.filename}"
    return f"{type(exc).__name__}: {exc}"


def _exit_code(exc: BaseException) -> int:
    bad_input = (UsageError, ValidationError, ConfigurationError, ImageAlreadyExists, OSError)
    if isinstance(exc, bad_input) and not isinstance(exc, ConnectionError | TimeoutError):
        return EXIT_USAGE
    return EXIT_FAILED


def run() -> None:
    """The console script's entry point."""
    code = main()
    if code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
        # A store call may still block a worker thread (a hung server), and the
        # interpreter joins worker threads at exit: an interrupted command
        # leaves now, as a process killed by the signal would.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()
        os._exit(code)
    sys.exit(code)
