"""The global rate-limit side of the tests: Redis, the development rate-limit service
(``tools/ratelimit-service``, Limitador's engine) and a scripted gRPC rate-limit service whose
answers a test chooses (OK, OVER_LIMIT, garbage, a gRPC error status, silence).

All of them listen on 127.0.0.1 only and are always stopped. A missing ``redis-server`` or
service binary is an error, never a skip."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

from . import rls
from .ports import reserve_port
from .process import die_with_parent, pause_process, stop_process
from .wait import wait_for

REPO = Path(__file__).resolve().parent.parent.parent
# Where `make ratelimit-service` puts this clone's copy, then where a plain cargo build in
# tools/ratelimit-service puts it.
DEFAULT_SERVICES = (REPO / "target" / "ratelimit-service" / "tenant-guard-ratelimit",
                    REPO / "tools" / "ratelimit-service" / "target" / "release"
                    / "tenant-guard-ratelimit")


# === Redis ===

def redis_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed: apt-get update && "
                           "apt-get install -y redis-server")
    return path


def redis_command(port: int, *args, timeout=1.0):
    """One RESP command to 127.0.0.1:``port``; returns the first reply line (``+PONG``...)."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = str(arg).encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode(errors="replace").strip()


def redis_info(port: int, section="server", timeout=1.0) -> dict:
    """``INFO <section>`` of the Redis on 127.0.0.1:``port`` as {field: value}."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(b"INFO %s\r\n" % section.encode())
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            reply += chunk
        head, _, rest = reply.partition(b"\r\n")
        if not head.startswith(b"$"):
            raise ConnectionError(f"unexpected INFO reply {head[:80]!r}")
        size = int(head[1:])
        while len(rest) < size:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            rest += chunk
    fields = {}
    for line in rest[:size].decode(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value
    return fields


class Redis:
    """``redis-server`` on a leased loopback port, without persistence. The port stays leased
    until ``stop()``, so Redis can be started again on it (``start()`` after ``kill()``)."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.port = 0
        self.process = None
        self._lease = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "redis.log"

    def start(self, timeout=10.0):
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._lease is None:
            self._lease = reserve_port()
            self.port = self._lease.port
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.workdir,
                start_new_session=True, preexec_fn=die_with_parent)
        try:
            wait_for(self._ready, timeout=timeout, message="redis-server to answer as itself")
        except AssertionError:
            code = self.process.poll()
            self.stop()
            text = self.log_path.read_text(errors="replace")
            raise RuntimeError(f"redis-server did not start (exit {code}):\n{text[-2000:]}")
        return self

    def _ready(self):
        """Answering, and it is this process that answers (not another Redis on the port)."""
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.process.returncode}")
        try:
            return redis_info(self.port).get("process_id") == str(self.process.pid)
        except (OSError, ValueError):
            return False

    def kill(self):
        """SIGKILL, as a crash; the port stays leased."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self):
        self.kill()
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# === The development rate-limit service ===

def ratelimit_binary() -> str:
    """``TENANT_GUARD_RATELIMIT``, else this clone's build (``DEFAULT_SERVICES``)."""
    path = os.environ.get("TENANT_GUARD_RATELIMIT")
    if path:
        if not os.access(path, os.X_OK):
            raise FileNotFoundError(f"TENANT_GUARD_RATELIMIT={path} is not an executable file: "
                                    "build it (make ratelimit-service) or unset the variable")
        return path
    for path in DEFAULT_SERVICES:
        if os.access(path, os.X_OK):
            return str(path)
    raise FileNotFoundError(
        f"the rate-limit service binary is not at {' or '.join(map(str, DEFAULT_SERVICES))} "
        "and TENANT_GUARD_RATELIMIT is not set: make ratelimit-service")


def limit(name, *, usage, plan, max_value, seconds=3600, variables=("tenant_id",),
          domain="tenant-guard", extra_conditions=()) -> dict:
    """One Limitador limit over the filter's single descriptor (``descriptors[0]``)."""
    conditions = [f"descriptors[0]['usage'] == '{usage}'",
                  f"descriptors[0]['plan'] == '{plan}'", *extra_conditions]
    return {"namespace": domain, "name": name, "max_value": max_value, "seconds": seconds,
            "conditions": conditions,
            "variables": [f"descriptors[0]['{v}']" for v in variables]}


@dataclass
class ServiceCall:
    """One ``ShouldRateLimit`` the service answered, from its debug log line."""
    domain: str
    entries: dict  # of the (only) descriptor
    hits: int      # what the service counted (0 counts as 1)
    code: str      # "Ok" | "OverLimit" | "Unknown"
    raw: str


_CALL_LINE = re.compile(r"ShouldRateLimit domain=(?P<domain>\S*) descriptors=\[(?P<desc>.*?)\] "
                        r"hits=(?P<hits>\d+) code=(?P<code>\w+)")


class RateLimitService:
    """``tenant-guard-ratelimit`` on 127.0.0.1 with the limits given as dicts (written as JSON,
    which is YAML), counters in Redis (``redis_url``) or in memory. It logs one line per call
    (``--log-level debug``), which is how tests read its counters without changing them. Its
    port is leased at the first start and kept until ``stop()``, so it can be started again on
    it after ``kill()``."""

    def __init__(self, workdir: Path, limits: list, *, redis_url: str = None,
                 rate_limit_headers=False):
        self.workdir = Path(workdir)
        self.limits = limits
        self.redis_url = redis_url
        self.rate_limit_headers = rate_limit_headers
        self.port = 0
        self.process = None
        self.starts = 0
        self._stdout = []
        self._lease = None

    @property
    def limits_path(self) -> Path:
        return self.workdir / "limits.yaml"

    def log_path(self, start=None) -> Path:
        return self.workdir / f"ratelimit-{self.starts if start is None else start}.log"

    def start(self, timeout=20.0):
        """Starts it (again, on the same port once it had one) and waits for its ready line."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.limits_path.write_text(json.dumps(self.limits, indent=1))
        self.starts += 1
        if self._lease is None:
            self._lease = reserve_port()
            self.port = self._lease.port
        args = [ratelimit_binary(), "--listen", f"127.0.0.1:{self.port}",
                "--limits", str(self.limits_path), "--log-level", "debug"]
        args += ["--redis", self.redis_url] if self.redis_url else ["--storage", "memory"]
        if self.rate_limit_headers:
            args.append("--rate-limit-headers")
        ready = threading.Event()
        lines = self._stdout = []
        with open(self.log_path(), "wb") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=log,
                                            start_new_session=True,
                                            preexec_fn=die_with_parent)

        def read(stream):
            for raw in stream:
                lines.append(raw.decode(errors="replace").rstrip("\n"))
                if "ready" in lines[-1]:
                    ready.set()
        threading.Thread(target=read, args=(self.process.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() >= deadline:
                code = self.process.poll()
                self.stop()
                raise RuntimeError(
                    f"the rate-limit service did not get ready (exit {code}); stdout {lines}; "
                    f"log:\n{self.log_path().read_text(errors='replace')[-3000:]}")
        line = next(l for l in lines if "ready" in l)
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match and int(match.group(1)) == self.port, \
            f"the ready line {line!r} does not name port {self.port}"
        return self

    def kill(self):
        """SIGKILL, as a crash."""
        self.process.kill()
        self.process.wait(timeout=10)

    def pause(self):
        """SIGSTOP: the socket still accepts, nobody answers (from the moment this returns:
        every thread has stopped)."""
        pause_process(self.process)

    def resume(self):
        self.process.send_signal(signal.SIGCONT)

    def stop(self):
        stop_process(self.process)
        if self._lease is not None:
            self._lease.release()
            self._lease = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def read_log(self) -> str:
        return "".join(self.log_path(i).read_text(errors="replace")
                       for i in range(1, self.starts + 1) if self.log_path(i).exists())

    def calls(self) -> list:
        found = []
        for line in self.read_log().splitlines():
            match = _CALL_LINE.search(line)
            if not match:
                continue
            entries = {}
            desc = match.group("desc").strip("{}").split(";")[0]
            for pair in desc.split(","):
                key, _, value = pair.partition("=")
                entries[key] = value
            found.append(ServiceCall(match.group("domain"), entries, int(match.group("hits")),
                                     match.group("code"), line))
        return found

    def calls_for(self, tenant, usage, **entries) -> list:
        """The calls about ``tenant``'s ``usage`` (and having ``entries``), in order."""
        wanted = dict(entries, tenant_id=tenant, usage=usage)
        return [c for c in self.calls()
                if all(c.entries.get(k) == v for k, v in wanted.items())]

    def counter(self, tenant, usage, **entries) -> int:
        """What the service added to the counter of ``tenant``'s ``usage`` (one window, one
        limit matching): the hits of every matching call it answered OK."""
        return sum(c.hits for c in self.calls_for(tenant, usage, **entries) if c.code == "Ok")

    def wait_counter(self, tenant, usage, value, timeout=30.0, at_least=False, **entries):
        """Polls until the counter is ``value`` (``at_least``: ``value`` or more); the timeout
        only bounds a hang."""
        def describe():
            calls = self.calls_for(tenant, usage, **entries)
            return (f"{tenant}'s {usage} counter {entries or ''} to reach {value} (now "
                    f"{self.counter(tenant, usage, **entries)}; calls "
                    f"{[(c.hits, c.code) for c in calls]})")

        def reached():
            counter = self.counter(tenant, usage, **entries)
            return counter >= value if at_least else counter == value
        wait_for(reached, timeout=timeout, interval=0.02, message=describe)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# === A scripted rate-limit service (grpcio) ===

@dataclass
class ScriptedCall:
    request: rls.RateLimitRequest
    raw: bytes
    arrived: float      # time.monotonic()
    # Calls in the handler when this one arrived (itself included); while a hold with a
    # ``match`` is set, only the calls it matches count (for a call it matches).
    concurrent: int


class ScriptedRateLimitService:
    """A gRPC server for ``ShouldRateLimit`` whose answer the test picks with ``answer_with``:
    a callable ``(request, context) -> bytes`` (raw reply bytes, or ``context.abort(...)``),
    applied to every call from then on. Every call is recorded (decoded) in ``calls``.
    ``hold_until_concurrent(n, timeout, match)`` makes each call (that ``match`` accepts) wait
    (bounded) until ``n`` such calls are in the handler at once, to see calls made side by
    side."""

    def __init__(self, workers=16):
        # Envoy and the services are started with fork + exec while grpcio's threads run:
        # its fork handlers would only log that they skip themselves.
        os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        import grpc  # tests/requirements.txt

        self._grpc = grpc
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.calls = []
        self._inflight = 0
        self._matched_inflight = 0
        self._hold_for = 0
        self._hold_timeout = 0.0
        self._hold_match = None
        self._arrived_since_hold = 0
        self._answer = lambda request, context: rls.encode_response(rls.OK)
        handler = grpc.method_handlers_generic_handler(rls.SERVICE, {
            rls.METHOD: grpc.unary_unary_rpc_method_handler(self._handle)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                                  handlers=[handler])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        assert self.port, "grpcio could not bind a loopback port"
        self.server.start()

    def answer_with(self, answer):
        with self._lock:
            self._answer = answer

    def answer_code(self, code, **kwargs):
        self.answer_with(lambda request, context: rls.encode_response(code, **kwargs))

    def answer_bytes(self, data: bytes):
        self.answer_with(lambda request, context: data)

    def answer_status(self, status_name: str, message="scripted failure"):
        code = getattr(self._grpc.StatusCode, status_name)
        self.answer_with(lambda request, context: context.abort(code, message))

    def hold_until_concurrent(self, count: int, timeout: float, match=None):
        """``match(request)``: the calls the hold applies to (default: all); others, such as a
        late debit of an earlier test, pass and do not count."""
        with self._lock:
            self._hold_for, self._hold_timeout = count, timeout
            self._hold_match = match
            self._arrived_since_hold = 0

    def _handle(self, raw: bytes, context):
        request = rls.decode_request(raw)
        with self._cond:
            matched = self._hold_match is None or self._hold_match(request)
            self._inflight += 1
            self._matched_inflight += matched
            concurrent = self._inflight if self._hold_match is None or not matched \
                else self._matched_inflight
            call = ScriptedCall(request, raw, time.monotonic(), concurrent)
            self.calls.append(call)
            answer = self._answer
            if matched:
                self._arrived_since_hold += 1
            self._cond.notify_all()
            if self._hold_for and matched:
                # Every call that arrived since is held here, so all of them are in flight.
                self._cond.wait_for(lambda: self._arrived_since_hold >= self._hold_for,
                                    timeout=self._hold_timeout)
        try:
            return answer(call.request, context)
        finally:
            with self._cond:
                self._inflight -= 1
                self._matched_inflight -= matched

    def wait_calls(self, count, timeout=5.0) -> list:
        wait_for(lambda: len(self.calls) >= count, timeout=timeout,
                 message=lambda: f"{count} calls at the scripted rate-limit service "
                                 f"(got {len(self.calls)})")
        return list(self.calls)

    def close(self):
        self.server.stop(grace=0).wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
