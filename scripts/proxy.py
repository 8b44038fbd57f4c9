"""A small reverse proxy for `make cluster`: round-robin TCP, one backend per client connection.

Working at the connection level it carries HTTP keep-alive and WebSocket upgrades alike. A backend
that refuses the connection is skipped (the next one is tried), so when one web process dies its
clients reconnect to the others. In production a real load balancer (nginx, HAProxy, a cloud LB, a
Kubernetes Service) takes this place; see docs/deploy.md.

    python scripts/proxy.py --listen 127.0.0.1:8000 --backend 127.0.0.1:8101 --backend 127.0.0.1:8102
"""

from __future__ import annotations

import argparse
import asyncio
import itertools


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


class Proxy:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.turn = itertools.cycle(range(len(backends)))

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        first = next(self.turn)
        for offset in range(len(self.backends)):
            host, port = self.backends[(first + offset) % len(self.backends)]
            try:
                return await asyncio.open_connection(host, port)
            except OSError:
                continue
        raise ConnectionRefusedError("no backend is accepting connections")

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            backend_reader, backend_writer = await self.connect()
        except ConnectionRefusedError:
            client_writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, backend_writer), pipe(backend_reader, client_writer))


def address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(listen: tuple[str, int], backends: list[tuple[str, int]]) -> None:
    proxy = Proxy(backends)
    server = await asyncio.start_server(proxy.handle, *listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--backend", type=address, action="append", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.backend))


if __name__ == "__main__":
    main()
