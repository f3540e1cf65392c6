"""External tools (git, rsync) run with a deadline: a hung one (a network mount, an ssh
password prompt, a lock) becomes a clear error instead of a command that never returns."""

from __future__ import annotations

import subprocess
from pathlib import Path

from xpkit.errors import XpError

# rsync's own I/O timeout and ssh's connect timeout: a dead server fails in seconds.
RSYNC_IO_TIMEOUT = 120
SSH = "ssh -o ConnectTimeout=20 -o ServerAliveInterval=15 -o ServerAliveCountMax=4"


def run_tool(
    args: list[str],
    *,
    timeout: float,
    error: type[XpError],
    what: str,
    cwd: Path | None = None,
    input: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool, its output captured as text; `error` if it runs past `timeout`."""
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            input=input,
            env=env,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise error(
            f"{what} did not finish within {timeout:.0f} s and was stopped "
            f"(`{' '.join(args[:4])}`{' …' if len(args) > 4 else ''}); raise the limit with "
            "XP_TOOL_TIMEOUT if it is only slow"
        ) from None


def rsync_args(rsync: str) -> list[str]:
    """rsync with timeouts that make a dead server fail fast."""
    return [rsync, f"--timeout={RSYNC_IO_TIMEOUT}", "-e", SSH]
