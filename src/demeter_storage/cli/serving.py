"""``demeter-storage serve``: the signed-URL app on uvicorn, stopped cleanly by a signal."""

from __future__ import annotations

import errno
import signal
import socket
import sys

from demeter_storage.bootstrap import build_service
from demeter_storage.domain.errors import ConfigurationError
from demeter_storage.web.app import SignedUrlApp


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


async def serve_forever(host: str, port: int, shutdown_timeout: float = 10.0) -> int:
    """Serve both buckets' signed URLs until SIGINT or SIGTERM; then close the stores.

    A signal stops accepting connections, lets requests in flight finish for
    ``shutdown_timeout`` seconds, cuts off the rest (a cut-off upload stores
    nothing), closes the stores and returns 0.
    """
    try:
        import uvicorn  # noqa: PLC0415 - the optional `web` extra
    except ImportError:
        raise ConfigurationError(
            "serve needs uvicorn: pip install 'demeter-storage[web]'"
        ) from None
    if not 0 < port < 65536:
        raise ConfigurationError(f"--port must be from 1 to 65535, got {port}")
    if not 0 <= shutdown_timeout <= 3600:
        raise ConfigurationError(f"--shutdown-timeout must be 0 to 3600 s, got {shutdown_timeout}")
    _check_port_free(host, port)
    service = await build_service()
    try:
        app = SignedUrlApp.for_service(service)
    except TypeError:
        await service.aclose()
        raise ConfigurationError(
            "serve is for the local and memory backends; S3 serves its own presigned URLs"
        ) from None
    signer = await app.signer(service.originals.name)
    print(
        f"serving {', '.join(app.stores)} on http://{host}:{port}; "
        f"URLs are issued for {signer.base_url.rsplit('/', 1)[0]}",
        file=sys.stderr,
        flush=True,
    )
    from demeter_storage.cli.uvicorn_server import (  # noqa: PLC0415 - uvicorn is there now
        QuietAtShutdown,
        StoppableServer,
    )

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
        timeout_graceful_shutdown=shutdown_timeout,  # type: ignore[arg-type]
    )
    server = StoppableServer(config)
    config.app = QuietAtShutdown(app, server)
    try:
        await server.serve()
    finally:
        await service.aclose()
    stopped_by = signal.Signals(server.signals[0]).name if server.signals else "request"
    print(f"demeter-storage: stopped ({stopped_by}); the stores are closed", file=sys.stderr)
    return 0
