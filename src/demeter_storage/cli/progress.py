"""A progress bar for bytes and files, drawn on a terminal and nowhere else."""

from __future__ import annotations

import io
import sys
import threading
import time
from typing import IO, Any, Final, TextIO

_WIDTH: Final = 28


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"  # pragma: no cover - the loop returns


class Progress:
    """Counts bytes and files; draws itself on ``stream`` only if it is a terminal."""

    def __init__(self, total_bytes: int, total_files: int, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.total_bytes = max(total_bytes, 1)
        self.total_files = total_files
        self.bytes = 0
        self.files = 0
        self._started = time.monotonic()
        self._lock = threading.Lock()

    def add_bytes(self, count: int) -> None:
        """Count bytes read (from any thread)."""
        with self._lock:
            self.bytes = min(self.bytes + count, self.total_bytes)

    def file_done(self) -> None:
        """Count one finished file."""
        with self._lock:
            self.files += 1

    def line(self) -> str:
        """The bar as one line of text."""
        filled = int(_WIDTH * self.bytes / self.total_bytes)
        rate = self.bytes / max(time.monotonic() - self._started, 1e-6)
        return (
            f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {_size(self.bytes)} / "
            f"{_size(self.total_bytes)}  {self.files}/{self.total_files} files  "
            f"{_size(rate)}/s"
        )

    def draw(self) -> None:
        """Redraw the bar in place (nothing when not on a terminal)."""
        if self.enabled:
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self.draw()
            self.stream.write("\n")
            self.stream.flush()


class CountingFile(io.RawIOBase):
    """A binary file that reports the bytes read from it to a :class:`Progress`."""

    def __init__(self, file: IO[bytes], progress: Progress) -> None:
        self._file = file
        self._progress = progress

    def readable(self) -> bool:  # noqa: D102
        return True

    def seekable(self) -> bool:  # noqa: D102
        return self._file.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:  # noqa: D102
        return self._file.seek(offset, whence)

    def tell(self) -> int:  # noqa: D102
        return self._file.tell()

    def readinto(self, buffer: Any) -> int:  # noqa: D102
        count = self._file.readinto(buffer)  # type: ignore[attr-defined]
        self._progress.add_bytes(count or 0)
        return int(count or 0)

    def read(self, size: int = -1) -> bytes:  # noqa: D102
        data = self._file.read(size)
        self._progress.add_bytes(len(data))
        return data
