"""Text messages per second through the WeChat callback: medwx against WeRoBot's echo bot, in one run.

    python bench/callback.py                      # both servers, 3 s warm-up + 15 s measured each, 32 connections
    python bench/callback.py --only medwx --duration 30 --connections 64

Run from the project root with the project's venv active. What it does, for each server in turn:

1. starts it with two workers on a free loopback port, in a process group of its own:
   - WeRoBot: ``bench/werobot_echo.py`` under ``gunicorn -k sync -w 2`` from the venv ``bench/.venv-werobot``
     (created here with pinned WeRoBot and gunicorn when missing);
   - medwx: ``sanic app:create_app --factory --workers 2`` with a throwaway PostgreSQL database (created and
     dropped here), the real Redis at ``--redis-url`` (this bench owns that database number and empties it
     before and after), a temporary VAR_DIR, and WECHAT_API_BASE on a closed loopback port (no outbound calls);
2. checks that it answers correctly before measuring anything: a signed text message gets HTTP 200 and a passive
   text reply addressed back to the sender (WeRoBot's must echo the content), and a bad signature is refused;
3. runs wrk with ``bench/callback.lua`` (every request a new MsgId, FromUserName cycling over ``--users``
   openids): a warm-up, then the measured run with the same parameters for both servers;
4. stops the server (SIGTERM to its group, SIGKILL if it lingers), also on errors and Ctrl-C.

msg/s counts only correct answers (HTTP 200 with a reply XML to one of our users); every other answer and every
socket error or timeout is an error, and a run with errors makes the exit status 1. p50/p99 are wrk's latency
percentiles. The table is printed with the date, the versions, and the exact commands (servers and wrk);
the same, with the server logs and wrk's own output, is kept under bench/out/ (gitignored).
The load generator shares the machine's cores with the servers, as in the reference measurement.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import urlencode, urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
LUA_SCRIPT = BENCH_DIR / "callback.lua"
WEROBOT_VENV = BENCH_DIR / ".venv-werobot"
# Pinned so that reruns compare against the same reference.
WEROBOT_PACKAGES = ["werobot==1.13.1", "gunicorn==27.0.1"]

HOST = "127.0.0.1"
CALLBACK_PATH = "/wechat/callback"
TOKEN = "medwx-bench-token"
ACCOUNT = "gh_test"
CONTENT = "你好"
# A reply saying the system is busy ("系统繁忙", "服务繁忙": medwx's apology when a handler fails or is overloaded)
# is well-formed but is not an answer: both the probe and callback.lua count it as an error.
APOLOGY = "繁忙"
# Nothing listens on the discard port: any outbound WeChat API call fails at once instead of leaving the machine.
HARMLESS_API_BASE = "http://127.0.0.1:9"
WORKERS = 2
STARTUP_TIMEOUT = 90.0  # seconds; medwx applies its migrations at start
STOP_TIMEOUT = 15.0
BUSY_WARNING = 15.0  # percent of all cores busy before a run, above which the report warns


class BenchError(RuntimeError):
    """A problem that stops the benchmark with a message instead of a figure."""


# -- processes ---------------------------------------------------------------------------------------------------
class Server:
    """A server started in a process group of its own, so that stopping it also stops its workers."""

    def __init__(self, name: str, argv: list[str], env_overrides: dict[str, str], log_path: Path):
        self.name = name
        self.argv = argv
        self.env_overrides = env_overrides
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def command_line(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env_overrides.items())
        return f"(cd {shlex.quote(str(ROOT))} && {env} {shlex.join(self.argv)})"

    def start(self) -> None:
        env = {**os.environ, **self.env_overrides}
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid  # start_new_session: the leader's pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            self.proc.wait(timeout=STOP_TIMEOUT)
        # Workers that outlived their master would still hold the port and the CPU.
        _signal_group(pgid, signal.SIGKILL)
        self.proc = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _run_bounded(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """Run a command in its own process group; kill the whole group on timeout, error or Ctrl-C."""
    proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(argv, proc.returncode, out.decode(errors="replace"), "")


def cpu_busy_percent(seconds: float = 1.0) -> float | None:
    """How busy the CPUs are (all cores, 0-100) over a short sample; None where /proc/stat is missing.

    Taken while none of the bench's processes run: other load on the machine makes the figures unreliable.
    """
    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        return sum(values), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return None
    total = total1 - total0
    return 100.0 * (total - (idle1 - idle0)) / total if total else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# -- the WeChat side ----------------------------------------------------------------------------------------------
class MsgIds:
    """MsgId prefixes (10 digits, epoch seconds), strictly increasing within this process.

    callback.lua appends a thread digit (1-9) and a 7-digit counter; the probes here use thread digit 0, so no
    MsgId repeats within a run or across runs of this script.
    """

    def __init__(self) -> None:
        self._last = 0
        self._probe_counter = 0
        self._probe_prefix = self.next_prefix()

    def next_prefix(self) -> str:
        self._last = max(self._last + 1, int(time.time()))
        return f"{self._last:010d}"

    def probe_id(self) -> str:
        self._probe_counter += 1
        return f"{self._probe_prefix}0{self._probe_counter:07d}"


def signed_query(token: str, timestamp: str | None = None, **extra: str) -> str:
    """The query string WeChat sends: signature = sha1 of the sorted token, timestamp and nonce."""
    timestamp = timestamp or str(int(time.time()))
    nonce = uuid.uuid4().hex[:10]
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return urlencode({"signature": signature, "timestamp": timestamp, "nonce": nonce, **extra})


def text_message(user: str, msg_id: str, content: str = CONTENT) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    ).encode()


def http_request(port: int, method: str, target: str, body: bytes | None = None,
                 timeout: float = 10.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Content-Type": "text/xml; charset=utf-8"} if body is not None else {}
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def check_callback(port: int, ids: MsgIds, *, echo: bool) -> str:
    """Prove the server answers the callback correctly before its speed means anything; return the reply's text."""
    user = "oBench" + "7".rjust(22, "0")
    status, body = http_request(port, "POST", f"{CALLBACK_PATH}?{signed_query(TOKEN)}",
                                text_message(user, ids.probe_id()))
    text = body.decode(errors="replace")
    if status != 200:
        raise BenchError(f"signed text message: HTTP {status}, expected 200: {text[:300]}")
    try:
        reply = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BenchError(f"signed text message: the answer is not XML ({exc}): {text[:300]}") from None
    fields = {child.tag: (child.text or "") for child in reply}
    expected = {"ToUserName": user, "FromUserName": ACCOUNT, "MsgType": "text"}
    wrong = {k: fields.get(k) for k, v in expected.items() if fields.get(k) != v}
    if reply.tag != "xml" or wrong or not fields.get("Content"):
        raise BenchError(f"signed text message: not a text reply to the sender ({wrong or 'no Content'}): "
                         f"{text[:300]}")
    if APOLOGY in fields["Content"]:
        raise BenchError(f"signed text message: answered with an apology: {fields['Content']!r}")
    if echo and fields["Content"] != CONTENT:
        raise BenchError(f"echo bot answered {fields['Content']!r}, expected {CONTENT!r}")

    bad_query = signed_query(TOKEN + "-wrong")
    status, body = http_request(port, "POST", f"{CALLBACK_PATH}?{bad_query}", text_message(user, ids.probe_id()))
    if status == 200:
        raise BenchError(f"a wrong signature was accepted (HTTP 200): {body[:300]!r}")
    return fields["Content"]


# A readiness probe returns None once the server is ready, else what it saw instead.
ReadyProbe = Callable[[], str | None]


def wait_ready(server: Server, not_ready: ReadyProbe) -> None:
    """Poll until the server is ready; fail early if it exits, late if it never gets there."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if server.exited():
            raise BenchError(f"{server.name} exited during start-up (code {server.proc.returncode}):\n"
                             f"{server.log_tail()}")
        try:
            last_error = not_ready()
            if last_error is None:
                return
        except (OSError, http.client.HTTPException) as exc:
            last_error = str(exc)
        time.sleep(0.2)
    raise BenchError(f"{server.name} not ready after {STARTUP_TIMEOUT:.0f} s ({last_error}):\n{server.log_tail()}")


# -- the two servers ---------------------------------------------------------------------------------------------
def ensure_werobot_venv() -> Path:
    gunicorn = WEROBOT_VENV / "bin" / "gunicorn"
    if gunicorn.exists():
        return gunicorn
    print(f"creating {WEROBOT_VENV.relative_to(ROOT)} with {' '.join(WEROBOT_PACKAGES)} ...", flush=True)
    python = shutil.which("python3") or sys.executable
    for argv in ([python, "-m", "venv", str(WEROBOT_VENV)],
                 [str(WEROBOT_VENV / "bin" / "pip"), "install", "-q", *WEROBOT_PACKAGES]):
        done = _run_bounded(argv, timeout=600)
        if done.returncode != 0:
            raise BenchError(f"{shlex.join(argv)} failed:\n{done.stdout[-3000:]}")
    return gunicorn


def werobot_server(port: int, log_path: Path, session_file: Path | None) -> tuple[Server, ReadyProbe]:
    gunicorn = ensure_werobot_venv()
    # --no-control-socket: gunicorn would otherwise create ~/.gunicorn/gunicorn.ctl, which a benchmark has no use for.
    argv = [str(gunicorn.relative_to(ROOT)), "-k", "sync", "-w", str(WORKERS), "-b", f"{HOST}:{port}",
            "--no-control-socket", "bench.werobot_echo:app"]
    env = {"WECHAT_TOKEN": TOKEN}
    if session_file is not None:
        env["WEROBOT_SESSION_FILE"] = str(session_file)
    server = Server("WeRoBot", argv, env, log_path)

    def not_ready() -> str | None:
        # The URL-verification handshake: a signed GET must answer the echostr.
        status, body = http_request(port, "GET", f"{CALLBACK_PATH}?{signed_query(TOKEN, echostr='bench-ready')}",
                                    timeout=2)
        return None if status == 200 and body == b"bench-ready" else f"echostr check: HTTP {status} {body[:200]!r}"

    return server, not_ready


@dataclass
class MedwxResources:
    """The throwaway PostgreSQL database and scratch directory of one medwx run."""

    admin_url: str
    redis_url: str
    db_name: str = field(default_factory=lambda: f"medwx_bench_{uuid.uuid4().hex[:10]}")
    var_dir: Path | None = None
    created_db: bool = False

    @property
    def database_url(self) -> str:
        u = urlsplit(self.admin_url)
        return urlunsplit((u.scheme, u.netloc, "/" + self.db_name, "", ""))

    def open(self) -> None:
        self._flush_redis()
        self._psql(f'CREATE DATABASE "{self.db_name}"')
        self.created_db = True
        self.var_dir = Path(tempfile.mkdtemp(prefix="medwx-bench-"))

    def close(self) -> None:
        errors = []
        if self.created_db:
            try:
                self._psql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
                self.created_db = False
            except BenchError as exc:
                errors.append(str(exc))
        if self.var_dir is not None:
            shutil.rmtree(self.var_dir, ignore_errors=True)
            self.var_dir = None
        try:
            self._flush_redis()
        except BenchError as exc:
            errors.append(str(exc))
        if errors:
            print("cleanup: " + "; ".join(errors), file=sys.stderr)

    def _psql(self, sql: str) -> None:
        if shutil.which("psql") is None:
            raise BenchError("psql not found: the medwx run needs PostgreSQL's client to create its database")
        done = _run_bounded(["psql", self.admin_url, "-v", "ON_ERROR_STOP=1", "-qXc", sql], timeout=60)
        if done.returncode != 0:
            raise BenchError(f"psql {sql!r} failed: {done.stdout.strip()}")

    def _flush_redis(self) -> None:
        # Leftovers from an earlier run (dedup keys, caches of rows in a dropped database) would skew this one.
        import redis

        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
            try:
                client.flushdb()
            finally:
                client.close()
        except redis.RedisError as exc:
            raise BenchError(f"Redis at {self.redis_url}: {exc}") from None


def medwx_server(port: int, log_path: Path, res: MedwxResources, app_factory: str) -> tuple[Server, ReadyProbe]:
    argv = [sys.executable, "-m", "sanic", app_factory, "--factory", "--host", HOST, "--port", str(port),
            "--workers", str(WORKERS)]
    env = {
        "WECHAT_TOKEN": TOKEN,
        "VAR_DIR": str(res.var_dir),
        "DATABASE_URL": res.database_url,
        "REDIS_URL": res.redis_url,
        "WECHAT_API_BASE": HARMLESS_API_BASE,
    }
    server = Server("medwx", argv, env, log_path)

    def not_ready() -> str | None:
        status, body = http_request(port, "GET", "/healthz", timeout=2)
        return None if status == 200 else f"/healthz: HTTP {status} {body[:200]!r}"

    return server, not_ready


# -- wrk ----------------------------------------------------------------------------------------------------------
@dataclass
class WrkResult:
    command: str
    duration_s: float
    requests: int
    ok: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: str
    error_detail: str
    first_bad: str

    @property
    def msg_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0


def run_wrk(port: int, args: argparse.Namespace, ids: MsgIds, duration: float, log_path: Path) -> WrkResult:
    url = f"http://{HOST}:{port}{CALLBACK_PATH}?{signed_query(TOKEN)}"
    argv = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{duration:g}s", "--timeout", f"{args.timeout:g}s",
            "--latency", "-s", str(LUA_SCRIPT.relative_to(ROOT)), url,
            "--", ids.next_prefix(), str(args.users), str(int(time.time())), APOLOGY]
    done = _run_bounded(argv, timeout=duration + 60)
    log_path.write_text(shlex.join(argv) + "\n\n" + done.stdout)
    match = re.search(r"^BENCH_RESULT (.*)$", done.stdout, re.M)
    if done.returncode != 0 or not match:
        raise BenchError(f"wrk failed (exit {done.returncode}):\n{done.stdout[-3000:]}")
    r = dict(kv.split("=", 1) for kv in match.group(1).split())
    first_bad = re.search(r"^BENCH_FIRST_BAD (.*)$", done.stdout, re.M)
    socket_errors = {k: int(r[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts")}
    wrong = {"bad_status": int(r["bad_status"]), "bad_body": int(r["bad_body"])}
    detail = ", ".join(f"{k}={v}" for k, v in {**wrong, **socket_errors}.items() if v)
    return WrkResult(
        command=f"(cd {shlex.quote(str(ROOT))} && {shlex.join(argv)})",
        duration_s=int(r["duration_us"]) / 1e6,
        requests=int(r["requests"]),
        ok=int(r["ok"]),
        errors=sum(wrong.values()) + sum(socket_errors.values()),
        p50_ms=int(r["p50_us"]) / 1000,
        p90_ms=int(r["p90_us"]) / 1000,
        p99_ms=int(r["p99_us"]) / 1000,
        max_ms=int(r["max_us"]) / 1000,
        statuses=r["statuses"],
        error_detail=detail,
        first_bad=first_bad.group(1) if first_bad else "",
    )


# -- one server, start to stop ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    name: str
    server_command: str
    sample_reply: str
    cpu_busy_before: float | None
    warmup: WrkResult
    measured: WrkResult


def bench_server(name: str, args: argparse.Namespace, ids: MsgIds, stamp: str) -> Outcome:
    busy = cpu_busy_percent()
    port = free_port()
    log_path = OUT_DIR / f"callback-{stamp}-{name}-server.log"
    res = None
    scratch = None
    try:
        if name == "werobot":
            session_file = None
            if args.werobot_sessions:
                scratch = Path(tempfile.mkdtemp(prefix="werobot-bench-"))
                session_file = scratch / "werobot_session.sqlite3"
            server, not_ready = werobot_server(port, log_path, session_file)
        else:
            res = MedwxResources(admin_url=args.admin_db_url, redis_url=args.redis_url)
            res.open()
            server, not_ready = medwx_server(port, log_path, res, args.app)
        print(f"[{server.name}] starting: {server.command_line}", flush=True)
        server.start()
        try:
            wait_ready(server, not_ready)
            sample = check_callback(port, ids, echo=(name == "werobot"))
            print(f"[{server.name}] callback answers correctly; warm-up {args.warmup:g} s ...", flush=True)
            warmup = run_wrk(port, args, ids, args.warmup, OUT_DIR / f"callback-{stamp}-{name}-warmup.txt")
            print(f"[{server.name}] measuring {args.duration:g} s ...", flush=True)
            measured = run_wrk(port, args, ids, args.duration, OUT_DIR / f"callback-{stamp}-{name}-wrk.txt")
            if server.exited():
                raise BenchError(f"{server.name} exited during the run:\n{server.log_tail()}")
        finally:
            server.stop()
        print(f"[{server.name}] {measured.msg_per_s:.0f} msg/s, p50 {measured.p50_ms:.1f} ms, "
              f"p99 {measured.p99_ms:.1f} ms, errors {measured.errors}", flush=True)
        return Outcome(server.name, server.command_line, sample, busy, warmup, measured)
    finally:
        if res is not None:
            res.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


# -- report -------------------------------------------------------------------------------------------------------
def versions() -> dict[str, str]:
    found = {"python (medwx)": platform.python_version()}
    try:
        import sanic

        found["sanic"] = sanic.__version__
    except ImportError:
        pass
    wrk = _run_bounded(["wrk", "-v"], timeout=10).stdout.splitlines()
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer": keep the version and the event loop.
    found["wrk"] = re.sub(r"^wrk\s+|\s*Copyright.*$", "", wrk[0].strip()) if wrk else "?"
    pip = WEROBOT_VENV / "bin" / "pip"
    if pip.exists():
        listed = _run_bounded([str(pip), "list", "--format=json"], timeout=60)
        try:
            for pkg in json.loads(listed.stdout[listed.stdout.index("["):]):
                if pkg["name"].lower() in {"werobot", "gunicorn"}:
                    found[pkg["name"]] = pkg["version"]
        except ValueError:
            pass
    return found


def report(outcomes: list[Outcome], args: argparse.Namespace, started: datetime.datetime, stamp: str) -> int:
    lines = [
        "",
        f"WeChat callback, text messages, new MsgId each — {started:%Y-%m-%d %H:%M:%S %Z}",
        f"machine: {os.cpu_count()} cores ({platform.machine()}, {platform.system()} {platform.release()}); "
        f"load generator on the same cores",
        f"load: wrk {args.threads} thread(s), {args.connections} connections, warm-up {args.warmup:g} s, "
        f"measured {args.duration:g} s, {args.users} users; {WORKERS} workers per server; WeRoBot sessions "
        + ("on (SQLite file, WeRoBot's default)" if args.werobot_sessions else "off (bare echo)"),
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
        "",
        f"{'server':<10}{'msg/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'errors':>8}  statuses",
    ]
    for o in outcomes:
        m = o.measured
        lines.append(f"{o.name:<10}{m.msg_per_s:>10.0f}{m.p50_ms:>10.1f}{m.p99_ms:>10.1f}{m.max_ms:>10.1f}"
                     f"{m.errors:>8}  {m.statuses}")
    by_name = {o.name: o.measured for o in outcomes}
    verdict = 0
    if "medwx" in by_name:
        medwx = by_name["medwx"]
        p99_ok = medwx.p99_ms < 30
        line = f"medwx p99 {medwx.p99_ms:.1f} ms (target < 30 ms: {'met' if p99_ok else 'NOT met'})"
        if "WeRoBot" in by_name and by_name["WeRoBot"].msg_per_s:
            ratio = medwx.msg_per_s / by_name["WeRoBot"].msg_per_s
            line = (f"ratio medwx/WeRoBot: {ratio:.1f}x (target >= 8x: {'met' if ratio >= 8 else 'NOT met'}); "
                    + line)
        lines += ["", line]
    for o in outcomes:
        if o.cpu_busy_before is not None and o.cpu_busy_before > BUSY_WARNING:
            lines.append(f"WARNING: the CPUs were {o.cpu_busy_before:.0f}% busy with other work just before the "
                         f"{o.name} run: its figures are unreliable; rerun on an idle machine")
        if o.measured.errors:
            verdict = 1
            lines.append(f"{o.name}: {o.measured.errors} errors ({o.measured.error_detail}); "
                         f"first wrong answer: {o.measured.first_bad or '-'}")
    lines += ["", "sample replies (probe before the run):"]
    for o in outcomes:
        first_line = o.sample_reply.splitlines()[0] if o.sample_reply else ""
        lines.append(f"  {o.name}: {first_line[:60]}{' …' if len(o.sample_reply) > len(first_line[:60]) else ''}")
    lines += ["", "commands:", f"  {shlex.join([Path(sys.executable).name, *sys.argv])}"]
    for o in outcomes:
        lines += [f"  {o.name} server: {o.server_command}", f"  {o.name} wrk:    {o.measured.command}"]
    lines.append(f"raw output and server logs: {OUT_DIR.relative_to(ROOT)}/callback-{stamp}-*")
    text = "\n".join(lines)
    print(text)
    (OUT_DIR / f"callback-{stamp}.txt").write_text(text + "\n")
    (OUT_DIR / f"callback-{stamp}.json").write_text(json.dumps({
        "date": started.isoformat(),
        "argv": sys.argv,
        "results": [{"server": o.name, "server_command": o.server_command, "sample_reply": o.sample_reply,
                     "cpu_busy_before_percent": o.cpu_busy_before,
                     "msg_per_s": o.measured.msg_per_s, **o.measured.__dict__,
                     "warmup": {**o.warmup.__dict__, "msg_per_s": o.warmup.msg_per_s}} for o in outcomes],
    }, ensure_ascii=False, indent=2) + "\n")
    return verdict


# -- main ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["werobot", "medwx"], help="measure one server only")
    p.add_argument("--duration", type=float, default=15.0, help="measured seconds per server (default 15)")
    p.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per server (default 3)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads, 1-9 (default 1)")
    p.add_argument("--users", type=int, default=1000, help="distinct FromUserName openids (default 1000)")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="wrk's per-request timeout in seconds, WeChat's own limit by default (5)")
    p.add_argument("--admin-db-url", default=os.environ.get("BENCH_POSTGRES_URL",
                                                            "postgres://postgres@127.0.0.1:5432/postgres"),
                   help="PostgreSQL URL used to create and drop the throwaway database (env BENCH_POSTGRES_URL)")
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
                   help="Redis database for medwx; emptied before and after the run (env BENCH_REDIS_URL)")
    p.add_argument("--werobot-sessions", action="store_true",
                   help="run WeRoBot with its default SQLite session storage (off by default: a bare echo)")
    p.add_argument("--app", default="app:create_app", help="the Sanic app factory to serve (default app:create_app)")
    args = p.parse_args(argv)
    if not 1 <= args.threads <= 9:
        p.error("--threads must be 1-9 (callback.lua gives each thread one MsgId digit)")
    if args.connections < args.threads:
        p.error("--connections must be at least --threads")
    if not (0 < args.duration <= 300 and 0 < args.warmup <= 60):
        p.error("--duration must be in (0, 300] and --warmup in (0, 60] seconds")
    if not 1 <= args.users <= 10**6:
        p.error("--users must be 1-1000000")
    return args


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk not found: install it (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so that the servers' process groups are stopped in the finally blocks.
    signal.signal(signal.SIGTERM, _interrupt)
    OUT_DIR.mkdir(exist_ok=True)
    started = datetime.datetime.now().astimezone()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    ids = MsgIds()
    names = [args.only] if args.only else ["werobot", "medwx"]
    outcomes = []
    try:
        for name in names:
            outcomes.append(bench_server(name, args, ids, stamp))
    except BenchError as exc:
        print(f"\nbenchmark stopped: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped, throwaway database dropped", file=sys.stderr)
        return 130
    return report(outcomes, args, started, stamp)


if __name__ == "__main__":
    sys.exit(main())
