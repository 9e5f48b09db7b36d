"""``demeter-storage serve``: the signed-URL app on uvicorn."""

from __future__ import annotations

import errno
import socket
import sys

from demeter_storage.bootstrap import build_service
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.web import SignedUrlApp


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} on {host} is in use: stop what holds it or pick another "
                    "with --port (and set DEMETER_PUBLIC_BASE_URL to match)"
                ) from None
            raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


async def serve_forever(host: str, port: int) -> int:
    """Serve both buckets' signed URLs until interrupted."""
    try:
        import uvicorn  # noqa: PLC0415 - the optional `web` extra
    except ImportError:
        raise ConfigurationError(
            "serve needs uvicorn: pip install 'demeter-storage[web]'"
        ) from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"--port must be from 1 to 65535, got {port}")
    _check_port_free(host, port)
    service = await build_service()
    try:
        app = SignedUrlApp.for_service(service)
    except TypeError:
        await service.aclose()
        raise ConfigurationError(
            "serve is for the local and memory backends; S3 serves its own presigned URLs"
        ) from None
    signer = await service.originals.url_signer()  # type: ignore[attr-defined]
    print(
        f"serving {', '.join(app.stores)} on http://{host}:{port}; "
        f"URLs are issued for {signer.base_url.rsplit('/', 1)[0]}",
        file=sys.stderr,
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    try:
        await uvicorn.Server(config).serve()
    finally:
        await service.aclose()
    return 0
