"""A loopback TCP proxy the test can cut and restore: a network partition of one node."""

from __future__ import annotations

import asyncio
import threading


class CuttableProxy:
    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port, self.target_port = listen_port, target_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: asyncio.base_events.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    def _run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                if self.server is None:  # cut: nothing more crosses
                    break
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            tr, tw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.close()
            return
        if self.server is None:  # cut while this connection was being set up: drop it
            w.transport.abort()
            tw.transport.abort()
            return
        self.writers |= {w, tw}
        await asyncio.gather(self._pipe(r, tw), self._pipe(tr, w))

    def up(self) -> None:
        async def go() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port,
                                                     reuse_address=True)
        self._run(go())

    def cut(self) -> None:
        """Drop every connection and refuse new ones."""
        async def go() -> None:
            if self.server is not None:
                self.server.close()
                await self.server.wait_closed()
                self.server = None
            for w in list(self.writers):
                w.transport.abort()
            self.writers.clear()
        self._run(go())

    def close(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
