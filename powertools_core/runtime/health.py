"""``/livez`` and ``/readyz`` on 127.0.0.1 for container probes (a tiny HTTP/1.0 responder)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

from powertools_core.runtime.base import log


class HealthServer:
    name = "health"

    def __init__(self, port: int, ready: Callable[[], bool], host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self.ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("health: serving /livez and /readyz on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                line = await reader.readline()
                while (await reader.readline()).strip():
                    pass
            parts = line.decode("latin-1").split()
            path = parts[1] if len(parts) > 1 else "/"
            if path == "/livez":
                status, body = 200, {"status": "ok"}
            elif path == "/readyz":
                ok = self.ready()
                status, body = (200 if ok else 503), {"status": "ready" if ok else "not ready"}
            else:
                status, body = 404, {"status": "not found"}
            payload = json.dumps(body).encode()
            reason = {200: "OK", 503: "Service Unavailable", 404: "Not Found"}[status]
            writer.write(
                f"HTTP/1.0 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
