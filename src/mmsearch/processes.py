"""Whether a process is still running, for records that name the process that wrote them
(a server's ``server.json``, a job's record, a worker's metric files): a record whose
writer is gone is stale, whatever it says."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while a process with this id exists on this machine (another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True
