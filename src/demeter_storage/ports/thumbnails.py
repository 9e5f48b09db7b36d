"""The thumbnail port: small JPEG previews of originals."""

from __future__ import annotations

import abc
from typing import IO


class ThumbnailMaker(abc.ABC):
    """Makes small JPEG previews of originals."""

    @abc.abstractmethod
    async def make(self, source: bytes | IO[bytes]) -> bytes | None:
        """Return a JPEG thumbnail of the image in ``source``, or None if it cannot be decoded.

        ``source`` is the whole image, as bytes or a seekable binary file
        positioned at its start. It must not raise for undecodable images.
        """

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most makers hold nothing
        """Release the maker's resources (its decoding threads). The default does nothing."""
