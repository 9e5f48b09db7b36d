"""Where SeaweedFS spends its CPU on a large upload: the server's own profile.

Run: ``python benchmarks/profile_seaweedfs.py [--size-mib 512] [--uploads 3]``.
It starts SeaweedFS (``weed mini``) with ``-cpuprofile``, uploads a file of
random bytes with raw boto3 (``upload_file``, 16 MiB parts x 8), stops the
server so that it writes the profile, and prints the functions that used the
most CPU, from the pprof file itself (gzip'd protobuf, decoded here: no Go
toolchain needed). The large-object section's upload limit quotes it: on this
project's 2-core machines 40-55% of the server's CPU went to MD5.

Nothing is timed here for the page: this is a tool for finding costs.
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from boto3.s3.transfer import TransferConfig
from common import MiB, log, raw_client

from demeter_storage.testing.seaweedfs import start_seaweedfs

BUCKET: Final = "profile"
SHOWN: Final = 15

# pprof's Profile message: the field numbers used below.
_SAMPLE, _LOCATION, _FUNCTION, _STRINGS = 2, 4, 5, 6
_SAMPLE_LOCATIONS, _SAMPLE_VALUES = 1, 2
_LOCATION_ID, _LOCATION_LINE, _LINE_FUNCTION = 1, 4, 1
_FUNCTION_ID, _FUNCTION_NAME = 1, 2


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: ints, or bytes for length-delimited."""
    at = 0
    while at < len(data):
        key, at = _varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(data, at)
            yield number, value
        elif wire == 2:
            length, at = _varint(data, at)
            yield number, data[at : at + length]
            at += length
        else:  # fixed 64 or 32 bits: not used by the fields read here
            at += 8 if wire == 1 else 4


def _ints(value: int | bytes) -> list[int]:
    """A repeated integer field's values, packed or not."""
    if isinstance(value, int):
        return [value]
    found, at = [], 0
    while at < len(value):
        number, at = _varint(value, at)
        found.append(number)
    return found


def flat_profile(path: Path) -> tuple[Counter[str], int]:
    """CPU per function where the sample was taken (the innermost frame), and the total."""
    data = gzip.decompress(path.read_bytes())
    samples: list[tuple[list[int], int]] = []
    locations: dict[int, int] = {}  # location id: its innermost function id
    functions: dict[int, int] = {}  # function id: its name's string index
    strings: list[str] = []
    for number, value in _fields(data):
        if number == _SAMPLE and isinstance(value, bytes):
            ids: list[int] = []
            values: list[int] = []
            for inner, item in _fields(value):
                (ids if inner == _SAMPLE_LOCATIONS else values).extend(_ints(item))
            samples.append((ids, values[-1]))  # the last value is CPU nanoseconds
        elif number == _LOCATION and isinstance(value, bytes):
            location_id, innermost = 0, 0
            for inner, item in _fields(value):
                if inner == _LOCATION_ID and isinstance(item, int):
                    location_id = item
                elif inner == _LOCATION_LINE and isinstance(item, bytes) and not innermost:
                    # The first line is the innermost frame; later ones were inlined into.
                    innermost = int(dict(_fields(item)).get(_LINE_FUNCTION, 0))
            locations[location_id] = innermost
        elif number == _FUNCTION and isinstance(value, bytes):
            parsed = dict(_fields(value))
            functions[int(parsed[_FUNCTION_ID])] = int(parsed.get(_FUNCTION_NAME, 0))
        elif number == _STRINGS and isinstance(value, bytes):
            strings.append(value.decode("utf-8", "replace"))
    flat: Counter[str] = Counter()
    for ids, cpu in samples:
        if ids:
            flat[strings[functions.get(locations.get(ids[0], 0), 0)]] += cpu
    return flat, sum(cpu for _, cpu in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512, help="the file's size (512)")
    parser.add_argument("--uploads", type=int, default=3, help="uploads while profiled (3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="demeter-profile-weed-") as tmp:
        root = Path(tmp)
        source, profile = root / "source.bin", root / "weed.pprof"
        with source.open("wb") as sink:
            for _ in range(args.size_mib):
                sink.write(os.urandom(MiB))
        server = start_seaweedfs(root / "seaweedfs", extra_args=(f"-cpuprofile={profile}",))
        try:
            client = raw_client(
                server.endpoint_url, server.access_key, server.secret_key.reveal(), 16
            )
            client.create_bucket(Bucket=BUCKET)
            config = TransferConfig(multipart_chunksize=16 * MiB, max_concurrency=8)
            for number in range(args.uploads):
                client.upload_file(str(source), BUCKET, f"big-{number}", Config=config)
                log(f"upload {number + 1}/{args.uploads} done")
        finally:
            server.stop()  # the profile is written as the server stops
        flat, total = flat_profile(profile)
    print(
        f"SeaweedFS CPU while uploading {args.uploads} x {args.size_mib} MiB: {total / 1e9:.1f} s"
    )
    md5 = sum(cpu for name, cpu in flat.items() if name.startswith("crypto/md5."))
    print(f"in MD5 (crypto/md5.*): {md5 / total:.0%}\n")
    for name, cpu in flat.most_common(SHOWN):
        print(f"{cpu / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
