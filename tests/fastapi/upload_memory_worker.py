"""One large upload through the router, in a process of its own; prints its memory as JSON.

Run as ``python upload_memory_worker.py SIZE_MIB ROOT``: uvicorn serves the
router (local store under ROOT, in-memory records, thumbnails off) in a
thread, a small upload warms everything up, the peak RSS (``VmHWM``) is
reset, then an httpx client in the same process streams a multipart form
with a SIZE_MIB file, generated chunk by chunk (so the client holds one
chunk). The growth of the peak is what the upload cost: server and client.
Used by ``tests/fastapi/test_upload_memory.py`` and ``benchmarks/fastapi_upload.py``.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from demeter_storage import StorageSettings
from demeter_storage.fastapi import allow_all, images_router, install_exception_handlers, lifespan

CHUNK = 1024 * 1024
BOUNDARY = "demeterboundary7d1f"
SAMPLE = (Path(__file__).resolve().parents[2] / "docs" / "assets" / "sample-leaf.jpg").read_bytes()


def form(name: str, size: int) -> Iterator[bytes]:
    """A multipart form whose file is ``size`` bytes: the sample's head, then zeros."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    yield SAMPLE[: min(size, len(SAMPLE))]
    zeros = bytes(CHUNK)
    left = size - min(size, len(SAMPLE))
    while left > 0:
        piece = zeros if left >= CHUNK else zeros[:left]
        left -= len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def peak_rss() -> int:
    """This process's peak resident set, in bytes (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def serve(root: Path) -> tuple[uvicorn.Server, str]:
    """The router on uvicorn in a thread; its base URL."""
    settings = StorageSettings(backend="local", storage_root=root, thumbnails=False)
    app = FastAPI(lifespan=partial(lifespan, settings=settings))
    install_exception_handlers(app)
    app.include_router(images_router(authorize=allow_all))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def main(size_mib: int, root: Path) -> dict[str, float]:
    server, url = serve(root)
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            warm = client.post(
                "/sessions/s/originals", content=form("warm.jpg", CHUNK), headers=headers
            )
            assert warm.status_code == 201, warm.text
            reset_peak()
            before = peak_rss()
            started = time.perf_counter()
            big = client.post(
                "/sessions/s/originals", content=form("big.jpg", size_mib * CHUNK), headers=headers
            )
            seconds = time.perf_counter() - started
            after = peak_rss()
            assert big.status_code == 201, big.text
            assert big.json()["size"] == size_mib * CHUNK
    finally:
        server.should_exit = True
    return {
        "size_mib": size_mib,
        "baseline_rss_mib": before / CHUNK,
        "peak_rss_mib": after / CHUNK,
        "growth_mib": (after - before) / CHUNK,
        "seconds": seconds,
        "mib_per_s": size_mib / seconds,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), Path(sys.argv[2]))))
