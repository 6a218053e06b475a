"""Loopback ports for the processes the harness starts.

``reserve_port()`` leases a port that stays ours until the lease is released, also while the
process using it is down (a service killed and started again on its port):

- it is taken from below the kernel's ephemeral range (``ip_local_port_range``), so no
  outgoing connection on the machine gets it as its local port and no ``bind(0)`` hands it
  out;
- an exclusive ``flock`` on ``<tmp>/tenant-guard-ports/<port>.lock`` marks it as taken for
  every other test process using this scheme (two test runs in parallel, and the rate-limit
  service's Rust tests, which lease ports the same way);
- it is checked to be bindable when leased.

This matters beyond clashes: Envoy binds listeners with ``SO_REUSEPORT``, so a second Envoy
given the same listener port starts without error and takes a share of the connections.
"""

import fcntl
import random
import socket
import tempfile
from pathlib import Path

LOCK_DIR = Path(tempfile.gettempdir()) / "tenant-guard-ports"
# Leased ports start here: above the well-known and demo ports (9901, 10000, 16379, 18080...).
LEASE_FLOOR = 20000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read, close).

    Nothing stops another process from taking it before it is used: prefer
    ``reserve_port()``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def lease_range() -> range:
    """Ports that are never handed out as ephemeral ports on this machine."""
    try:
        low, high = (int(v) for v in
                     Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - LEASE_FLOOR >= 1000:
        return range(LEASE_FLOOR, low)
    if 65535 - high >= 1000:
        return range(high + 1, 65536)
    raise RuntimeError(f"no room for leased ports outside the ephemeral range {low}-{high}")


class PortLease:
    """A leased port: ``port``; ``release()`` (or garbage collection, or the end of the
    process) gives it back."""

    def __init__(self, port: int, lock_file):
        self.port = port
        self._lock_file = lock_file

    def release(self):
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file drops the flock
            self._lock_file = None

    @property
    def held(self) -> bool:
        return self._lock_file is not None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return f"<PortLease {self.port}{'' if self.held else ' released'}>"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As servers bind: a connection of an earlier user in TIME_WAIT does not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve_port(attempts: int = 200) -> PortLease:
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    ports = lease_range()
    for _ in range(attempts):
        port = random.choice(ports)
        lock_file = open(LOCK_DIR / f"{port}.lock", "a")  # noqa: SIM115 - kept open as the lease
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock_file.close()
            continue
        if _bindable(port):
            return PortLease(port, lock_file)
        lock_file.close()  # held by a process outside this scheme
    raise RuntimeError(f"no free port to lease in {ports.start}-{ports.stop - 1} after "
                       f"{attempts} attempts (locks in {LOCK_DIR})")


def reserve_ports(count: int) -> list:
    """``count`` distinct leases."""
    leases = []
    try:
        while len(leases) < count:
            leases.append(reserve_port())
    except BaseException:
        for lease in leases:
            lease.release()
        raise
    return leases


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether anything accepts connections on 127.0.0.1:``port``. Not a readiness signal
    for a process the harness started (any process listening there answers)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False
