"""The embedding processes (``vision.worker``, each loading the models once) behind a bounded queue.

At most ``workers + queue`` photos are in this server worker's hands at once; one more is refused at once with
``ServiceBusy`` (503, Retry-After) rather than waiting behind a line the kiosk has long given up on. Processes start
on the first photo (or ``warm_up``); one that dies is replaced on the next photo.

Child processes are started with asyncio, not ``multiprocessing``: Sanic's workers are daemonic and ``multiprocessing``
refuses children to those. An exchange runs as its own task, so a request that goes away (client disconnected) does
not leave a half-read answer in the pipe; the photo stays counted until its process is done with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import struct
import sys

from core.errors import ServiceBusy
from core.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 2


class PhotoRefused(Exception):
    """The process looked at the photo and refused it: ``args[0]`` is the code (``no_face``, ``bad_image``…)."""


class _Process:
    def __init__(self, proc: asyncio.subprocess.Process):
        self.proc = proc

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def exchange(self, body: bytes) -> dict:
        self.proc.stdin.write(struct.pack(">I", len(body)) + body)
        await self.proc.stdin.drain()
        (length,) = struct.unpack(">I", await self.proc.stdout.readexactly(4))
        return json.loads(await self.proc.stdout.readexactly(length))

    async def close(self, timeout: float = 5.0) -> None:
        if self.alive:
            self.proc.stdin.close()  # the process ends at end of input
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class EmbeddingPool:
    def __init__(self, deepface_home: str, workers: int = 1, queue: int = 4):
        self.deepface_home = deepface_home
        self.workers = max(1, workers)
        self.limit = self.workers + max(0, queue)
        self.in_flight = 0
        self._idle: list[_Process] = []
        self._all: list[_Process] = []
        self._freed: asyncio.Condition | None = None
        self._closed = False

    # -- the processes -----------------------------------------------------------------------------------------
    async def _spawn(self) -> _Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vision.worker", self.deepface_home, cwd=str(PROJECT_ROOT),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 20)
        process = _Process(proc)
        self._all.append(process)
        return process

    async def _acquire(self) -> _Process:
        if self._freed is None:
            self._freed = asyncio.Condition()
        async with self._freed:
            while True:
                self._all = [p for p in self._all if p.alive]
                self._idle = [p for p in self._idle if p.alive]
                if self._idle:
                    return self._idle.pop()
                if len(self._all) < self.workers:
                    return await self._spawn()
                await self._freed.wait()

    async def _release(self, process: _Process) -> None:
        async with self._freed:
            if process.alive and not self._closed:
                self._idle.append(process)
            self._freed.notify()

    async def _run(self, body: bytes) -> dict:
        process = await self._acquire()
        try:
            return await process.exchange(body)
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as exc:
            log.error("an embedding process ended (exit code %s); a new one starts with the next photo",
                      process.proc.returncode)
            if process.alive:
                process.proc.kill()
            raise ServiceBusy("人脸识别暂时不可用，请稍后再试", code="face_unavailable",
                              headers={"Retry-After": str(RETRY_AFTER_SECONDS)}) from exc
        finally:
            await self._release(process)

    # -- what callers use ----------------------------------------------------------------------------------------
    async def _call(self, body: bytes) -> dict:
        if self._closed:
            raise RuntimeError("the embedding pool is closed")
        if self.in_flight >= self.limit:
            raise ServiceBusy("人脸识别繁忙，请稍后再试", code="face_busy",
                              headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.in_flight += 1
        task = asyncio.ensure_future(self._run(body))
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task) -> None:
        self.in_flight -= 1
        if not task.cancelled():
            task.exception()  # retrieved: an abandoned exchange that failed is not "never retrieved"

    async def embed(self, photo: bytes) -> dict:
        """``vision.engine.embed_photo``'s result (vector as bytes), ``PhotoRefused(code)``, or ``ServiceBusy``."""
        answer = await self._call(b"E" + photo)
        if answer.get("ok"):
            answer["vector"] = base64.b64decode(answer["vector"])
            return answer
        if "code" in answer:
            raise PhotoRefused(answer["code"])
        raise RuntimeError(f"embedding failed: {answer.get('error')}")

    async def warm_up(self) -> None:
        """Start every process and load the models now instead of on the first photo."""
        await asyncio.gather(*(self._call(b"R") for _ in range(self.workers)))

    async def aclose(self) -> None:
        self._closed = True
        processes, self._all, self._idle = self._all, [], []
        await asyncio.gather(*(p.close() for p in processes), return_exceptions=True)
