"""The `tenant-guard` command (tools/cli, `make cli`): `check` and `audit`."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def cli_binary() -> Path:
    """``TENANT_GUARD_CLI`` (make exports it), else what `make cli` builds. A missing binary is
    an error, never a skip."""
    path = Path(os.environ.get("TENANT_GUARD_CLI", REPO / "target" / "cli" / "tenant-guard"))
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: build it with `make cli`")
    return path


def run(*args, cwd=REPO) -> subprocess.CompletedProcess:
    """``tenant-guard ARGS``, from the repository root (bootstraps name paths from there)."""
    return subprocess.run([str(cli_binary()), *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def log_lines(result: subprocess.CompletedProcess) -> list:
    """The filter's log lines `check` printed for refused policies."""
    return [line for line in result.stderr.splitlines()
            if line.startswith("tenant-guard: invalid configuration: ")]
