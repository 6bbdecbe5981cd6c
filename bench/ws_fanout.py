"""Console fan-out: time from a ticket's commit to its frame on every connected agent's WebSocket.

    python bench/ws_fanout.py                          # 200 agents, 10 tickets/s for 30 s, 2 server workers
    python bench/ws_fanout.py --agents 400 --rate 20 --seconds 60

Run from the project root with the project's venv. It makes a throw-away PostgreSQL database (dropped at the end),
empties the Redis database it is given (default db 14: give it one nobody else uses), seeds two hospitals and N agents
serving both, starts ``sanic app:create_app --factory --workers 2`` on that database and Redis, logs every agent in
through ``POST /console/api/v1/login`` and connects its ``/console/ws``. Then it opens tickets at a steady rate
through the domain (``repair.tickets.open_ticket``, which commits, then publishes): each ticket is one frame for
every agent, so 200 agents × 10 tickets/s = 2,000 frames/s.

Latency = the time a client receives the frame − the time in the event's stream id (Redis stamps each entry in
milliseconds when ``XADD`` runs, right after the commit). Server, Redis and clients share one clock. The clients
run in this process, so the figures include this process's own event-loop delay: an upper bound. Target: p99 <
100 ms at 200 agents and 10 tickets/s on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from console.auth import COOKIE, hash_password  # noqa: E402
from core.db import close_db, init_db  # noqa: E402
from core.events import EventBus  # noqa: E402
from core.models import Hospital, User  # noqa: E402
from core.settings import Settings  # noqa: E402

PASSWORD = "bench-agent-pass"


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


class Agent:
    def __init__(self, username: str):
        self.username = username
        self.cookie = ""
        self.latency: dict[str, float] = {}  # ticket number → ms from commit to this agent's frame
        self.closed_with: int | None = None


async def make_database(admin_url: str) -> str:
    name = f"medwx_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgres://{urlsplit(admin_url).netloc}/{name}"


async def drop_database(admin_url: str, url: str) -> None:
    conn = await asyncpg.connect(admin_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await conn.close()


async def seed(database_url: str, agents: int) -> tuple[list, list[str]]:
    from repair.models import Device

    await init_db(Settings(database_url=database_url, secret_key="bench"))  # applies the migrations
    hospitals = [await Hospital.create(name=name) for name in ("市第一人民医院", "市中心医院")]
    devices = [await Device.create(hospital=h, system_number=f"D{i:04d}", nameplate_id=f"SN-{i}", name="呼吸机",
                                   device_type="ventilator") for i, h in enumerate(hospitals, 1)]
    password_hash = hash_password(PASSWORD)  # one hash for all: hashing is not what is measured
    names = []
    for i in range(agents):
        user = await User.create(role="agent", username=f"agent{i:04d}", name=f"客服{i}", password_hash=password_hash)
        await user.served_hospitals.add(*hospitals)
        names.append(user.username)
    return devices, names


def sanic_args(args: argparse.Namespace) -> list[str]:
    """The ``sanic`` command line the benches serve the app with."""
    return ["app:create_app", "--factory", "--workers", str(args.workers), "--host", "127.0.0.1",
            "--port", str(args.port), "--no-access-logs"]


def start_server(args: argparse.Namespace, env: dict) -> subprocess.Popen:
    """``sanic app:create_app --factory`` with ``args.workers`` workers on ``args.port``, in its own process group,
    with its wait for the workers' start acknowledgement raised to ``args.ack_timeout``: a loaded machine starts them
    more slowly than Sanic's fixed 30 s allow."""
    launcher = ("import sys; from sanic.worker.manager import WorkerManager; "
                f"WorkerManager.THRESHOLD = {int(args.ack_timeout * 10)}; "
                "from sanic.__main__ import main; main(sys.argv[1:])")
    return subprocess.Popen([sys.executable, "-c", launcher, *sanic_args(args)], cwd=ROOT, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL if args.quiet else None)


def stop_server(server: subprocess.Popen | None) -> None:
    """SIGINT to the main process's group (workers stop in order), SIGKILL after 20 s."""
    if server is not None and server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


async def wait_healthy(base: str, server: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the server exited with {server.returncode}")
            try:
                async with http.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit("the server did not become healthy in time")


async def login_all(base: str, agents: list[Agent], redis_client, through_http: int, concurrency: int = 4) -> None:
    """The first ``through_http`` agents log in through the API; the others get their sessions made directly
    (argon2 costs each login tens of milliseconds of server CPU, which is not what is measured)."""
    from console.auth import start_session

    gate = asyncio.Semaphore(concurrency)

    async def login(http, agent: Agent):
        async with gate, http.post(base + "/console/api/v1/login",
                                   json={"username": agent.username, "password": PASSWORD}) as resp:
            if resp.status != 200:
                raise SystemExit(f"login of {agent.username}: {resp.status} {await resp.text()}")
            agent.cookie = resp.cookies[COOKIE].value

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(login(http, a) for a in agents[:through_http]))
    settings = Settings(secret_key="bench")
    for agent in agents[through_http:]:
        agent.cookie, _ = await start_session(redis_client, settings, await User.get(username=agent.username))


async def listen(http: aiohttp.ClientSession, ws_url: str, agent: Agent, connected: list, everyone: int,
                 ready: asyncio.Event, stop: asyncio.Event) -> None:
    async with http.ws_connect(ws_url, headers={"Cookie": f"{COOKIE}={agent.cookie}"}, heartbeat=None,
                               max_msg_size=1 << 20) as ws:
        hello = await ws.receive_json()
        assert hello["type"] == "hello", hello
        connected.append(agent)
        if len(connected) == everyone:
            ready.set()
        while not stop.is_set():
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                if not stop.is_set():
                    agent.closed_with = ws.close_code
                return
            now_ms = time.time() * 1000
            frame = json.loads(msg.data)
            if frame.get("type") == "event" and frame.get("event") == "ticket.opened":
                agent.latency[frame["data"]["number"]] = now_ms - int(frame["id"].split("-")[0])


def sockets_per_worker(port: int) -> dict[str, int]:
    """Established connections on the server port, by owning process (which worker holds which socket)."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True).stdout
    counts: dict[str, int] = {}
    for line in out.splitlines():
        if "pid=" in line:
            pid = line.split("pid=")[1].split(",")[0]
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of the line)
    return total / os.sysconf("SC_CLK_TCK")


async def open_tickets(devices, events: EventBus, rate: float, seconds: float) -> list[str]:
    from repair.tickets import TicketRequest, open_ticket

    numbers, loop = [], asyncio.get_running_loop()
    start, n = loop.time(), 0
    while n < rate * seconds:
        due = start + n / rate  # a steady schedule: a slow commit does not shift the later ones
        await asyncio.sleep(max(0.0, due - loop.time()))
        device = devices[n % len(devices)]
        ticket, _ = await open_ticket(TicketRequest(hospital=await device.hospital, device=device,
                                                    description=f"压测工单 {n}"), events=events)
        numbers.append(ticket.number)
        n += 1
    return numbers


async def run(args: argparse.Namespace) -> int:
    redis_client = aioredis.from_url(args.redis_url, decode_responses=True)
    await redis_client.flushdb()
    database_url = await make_database(args.postgres_admin_url)
    var_dir = Path(tempfile.mkdtemp(prefix="medwx-bench-"))
    server = None
    try:
        devices, names = await seed(database_url, args.agents)
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": args.redis_url, "VAR_DIR": str(var_dir),
               "DEMO_DATA": "0", "LOG_LEVEL": "WARNING", "SECRET_KEY": uuid.uuid4().hex * 2,
               "PUBLIC_BASE_URL": f"http://127.0.0.1:{args.port}"}
        server = start_server(args, env)
        base = f"http://127.0.0.1:{args.port}"
        await wait_healthy(base, server, args.ack_timeout + 30)
        agents = [Agent(n) for n in names]
        t0 = time.monotonic()
        await login_all(base, agents, redis_client, args.http_logins)
        print(f"logged in {len(agents)} agents ({min(args.http_logins, len(agents))} through the API) "
              f"in {time.monotonic() - t0:.1f} s")

        stop, ready, connected = asyncio.Event(), asyncio.Event(), []
        connector = aiohttp.TCPConnector(limit=0)
        http = aiohttp.ClientSession(connector=connector)
        ws_url = base.replace("http", "ws", 1) + "/console/ws"
        listeners = [asyncio.create_task(listen(http, ws_url, a, connected, len(agents), ready, stop)) for a in agents]
        await asyncio.wait_for(ready.wait(), 60)
        per_worker = sockets_per_worker(args.port)
        print(f"connected {len(connected)} sockets; per server worker (pid: sockets): {per_worker}")

        events = EventBus(redis_client)
        cpu0, server0 = os.times(), cpu_seconds(per_worker)
        numbers = await open_tickets(devices, events, args.rate, args.seconds)
        await asyncio.sleep(args.drain)  # let the last frames arrive
        cpu1, server1 = os.times(), cpu_seconds(per_worker)
        stop.set()
        await http.close()
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)

        expected = set(numbers)
        latencies = sorted(lat for a in agents for lat in a.latency.values())
        missing = sum(len(expected - a.latency.keys()) for a in agents)
        dropped = sum(1 for a in agents if a.closed_with is not None)
        frames = sum(len(a.latency) for a in agents)
        # Per ticket: its first and its last agent. A late first frame means the whole fan-out started late
        # (scheduling, the commit's publish); a wide gap between first and last means the fan-out itself is slow.
        per_ticket = [[a.latency[n] for a in agents if n in a.latency] for n in numbers]
        firsts = sorted(min(v) for v in per_ticket if v)
        lasts = sorted(max(v) for v in per_ticket if v)
        print()
        print("command: python " + " ".join(shlex.quote(a) for a in sys.argv))
        print("server:  sanic " + " ".join(shlex.quote(a) for a in sanic_args(args))
              + f"  (start acknowledgement wait {args.ack_timeout:g} s)")
        print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"agents {len(agents)}, tickets {len(numbers)} at {args.rate}/s for {args.seconds:g} s, "
              f"frames received {frames} of {len(numbers) * len(agents)} expected; missing {missing}; "
              f"sockets closed by the server {dropped}")
        print(f"CPU while publishing ({args.seconds + args.drain:g} s of wall time): server workers "
              f"{server1 - server0:.1f} s, this process (ticket commits + {len(agents)} clients) "
              f"{cpu1.user - cpu0.user + cpu1.system - cpu0.system:.1f} s")
        if latencies:
            print(f"commit → frame latency, ms: p50 {percentile(latencies, 50):.1f}  p90 "
                  f"{percentile(latencies, 90):.1f}  p99 {percentile(latencies, 99):.1f}  max {latencies[-1]:.1f}  "
                  f"mean {statistics.fmean(latencies):.1f}")
            print(f"per ticket, first agent: p50 {percentile(firsts, 50):.1f}  p99 {percentile(firsts, 99):.1f};  "
                  f"last agent: p50 {percentile(lasts, 50):.1f}  p99 {percentile(lasts, 99):.1f}")
        return 0 if latencies and percentile(latencies, 99) < args.target_ms and not missing else 1
    finally:
        stop_server(server)
        await close_db()
        await drop_database(args.postgres_admin_url, database_url)
        await redis_client.flushdb()
        await redis_client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--rate", type=float, default=10.0, help="tickets opened per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long tickets are opened")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to wait for the last frames")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=8201)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14", help="a Redis database it may empty")
    parser.add_argument("--postgres-admin-url", default="postgres://postgres@127.0.0.1:5432/postgres",
                        help="where the throw-away database is created")
    parser.add_argument("--target-ms", type=float, default=100.0, help="p99 target; exit 1 when missed")
    parser.add_argument("--http-logins", type=int, default=20,
                        help="agents logging in through POST /login; the others' sessions are made directly")
    parser.add_argument("--ack-timeout", type=float, default=120.0,
                        help="seconds Sanic waits for the workers to start (its own default is 30)")
    parser.add_argument("--quiet", action="store_true", help="hide the server's log")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
