"""HmacSha256: RFC 2104's HMAC, computed without giving up the GIL."""

from __future__ import annotations

import hashlib
import hmac
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demeter_storage.adapters.shared.hmac_sha256 import BLOCK_SIZE, HmacSha256, sha256_hexdigest


@given(
    key=st.binary(max_size=3 * BLOCK_SIZE)
    | st.binary(min_size=BLOCK_SIZE - 1, max_size=BLOCK_SIZE + 1),
    message=st.binary(max_size=5000),
)
def test_the_mac_is_the_standard_librarys(key: bytes, message: bytes) -> None:
    mac = HmacSha256(key)
    assert mac.digest(message) == hmac.digest(key, message, "sha256")
    assert mac.hexdigest(message) == hmac.new(key, message, "sha256").hexdigest()
    # The keyed states are copied, never consumed: a second MAC is the same.
    assert mac.digest(message) == hmac.digest(key, message, "sha256")


@given(data=st.binary(max_size=9000))
def test_the_digest_is_hashlibs(data: bytes) -> None:
    assert sha256_hexdigest(data) == hashlib.sha256(data).hexdigest()


def test_the_key_stays_out_of_the_repr() -> None:
    assert "secret" not in repr(HmacSha256(b"secret-key-bytes"))


class _Spinner:
    """A thread that counts while it holds the GIL, so the count moves only when we let go."""

    def __init__(self) -> None:
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self) -> None:
        while not self._stop:
            self.count += 1

    def __enter__(self) -> _Spinner:
        self._thread.start()
        while self.count == 0:
            time.sleep(0.001)  # lets the spinner take the GIL and start counting
        return self

    def __exit__(self, *_: object) -> None:
        self._stop = True
        self._thread.join()

    def moved_during(self, work: Callable[[], object]) -> bool:
        # Regain the GIL and then do the work at once: a forced switch comes only
        # after the switch interval (set long below), so between the two reads
        # the spinner runs only if the work itself releases the GIL.
        time.sleep(0)
        before = self.count
        work()
        return self.count != before


@pytest.fixture
def spinner() -> Iterator[_Spinner]:
    interval = sys.getswitchinterval()
    # Long, so that even a signing thread the OS preempts is not switched out.
    sys.setswitchinterval(0.5)
    try:
        with _Spinner() as running:
            yield running
    finally:
        sys.setswitchinterval(interval)


def test_signing_never_lets_another_thread_in(spinner: _Spinner) -> None:
    mac = HmacSha256(b"k" * 32)
    message = b"AWS4-HMAC-SHA256\n20260301T083015Z\n" + b"x" * 200
    assert not spinner.moved_during(lambda: [mac.digest(message) for _ in range(200)])
    # hashlib lets go for any single input of 2 KiB or more: long ones go in pieces.
    long = b"X-Amz-Security-Token=" + b"t" * 5000
    assert not spinner.moved_during(lambda: [mac.digest(long) for _ in range(50)])
    assert not spinner.moved_during(lambda: [sha256_hexdigest(long) for _ in range(50)])
    assert not spinner.moved_during(lambda: HmacSha256(long))
    # The check can fail: the standard library's one-shot HMAC lets go of the
    # GIL. Whether the spinner wakes in time to take it is a race, so try often.
    assert spinner.moved_during(
        lambda: _digest_until_spinner_moves(lambda: spinner.count, hmac.digest, 10_000)
    )


def _digest_until_spinner_moves(
    count: Callable[[], int], digest: Callable[[bytes, bytes, str], bytes], most: int
) -> None:
    before = count()
    for _ in range(most):
        digest(b"k" * 32, b"message", "sha256")
        if count() != before:
            return
