"""``<home>/server.json``: the note a running ``mmsearch serve`` leaves in its workspace.

A cold ``mmsearch search`` spends most of its time importing the store and the models
(lancedb, sentence-transformers), while a running server holds both warm. The server
writes this file when it starts and removes it when it stops, so that a search in the
same workspace can find it and let it answer (``commands/remote.py``).

The file is a hint, never trusted on its own: a reader uses it only when the URL is
loopback, the process is alive and the server at the URL answers ``/healthz`` with the
file's ``server_id`` (a process that took the port later does not know it). A file left
by a killed server is ignored, not deleted: it may belong to another user, and the next
``mmsearch serve`` replaces it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsearch import __version__
from mmsearch.clock import utc_now

FILE_NAME = "server.json"
# A server bound to every interface is reached on loopback from this machine.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


class ServerRecord(BaseModel):
    """Where the workspace's server listens and how to tell it is still that server."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    url: str = Field(description="the server's base URL, e.g. http://127.0.0.1:8000")
    pid: int = Field(description="the serving process (uvicorn's parent with --workers)")
    home: str = Field(description="the workspace the server serves, resolved")
    started_at: str
    version: str = Field(description="mmsearch's version in the server")
    server_id: str = Field(description="random per start; /healthz sends it back")

    @classmethod
    def for_this_process(cls, host: str, port: int, home: Path) -> ServerRecord:
        return cls(
            url=server_url(host, port),
            pid=os.getpid(),
            home=str(home.expanduser().resolve()),
            started_at=utc_now(),
            version=__version__,
            server_id=secrets.token_hex(16),
        )


def server_url(host: str, port: int) -> str:
    host = WILDCARD_HOSTS.get(host.strip("[]"), host.strip("[]"))
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            host = f"[{host}]"
    return f"http://{host}:{port}"


def record_path(home: Path) -> Path:
    return home.expanduser() / FILE_NAME


def read_record(home: Path) -> ServerRecord | None:
    """The workspace's record, or None when there is none or it cannot be read."""
    try:
        return ServerRecord.model_validate_json(record_path(home).read_bytes())
    except (OSError, ValidationError):
        return None


def write_record(record: ServerRecord) -> Path:
    """Replace the record atomically (readers see the old file or the new one), 0600:
    the home folder's own mode is left as the user set it."""
    path = record_path(Path(record.home))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{FILE_NAME}.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(record.model_dump_json(indent=2) + "\n")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path


def remove_record(home: Path, pid: int) -> bool:
    """Remove the record if it is still ``pid``'s: a second server in the same workspace
    may have replaced it, and that one's note must stay."""
    found = read_record(home)
    if found is None or found.pid != pid:
        return False
    with contextlib.suppress(FileNotFoundError):
        record_path(home).unlink()
    return True


@contextlib.contextmanager
def recorded(record: ServerRecord) -> Iterator[OSError | None]:
    """``record`` in the workspace while the block runs, removed however it ends; yields
    why it could not be written (None: it was), for a server that runs on without it.

    uvicorn shuts down gracefully on SIGTERM and then raises the signal again with the
    handler that was there before it started, which by default ends the process without
    unwinding: that handler is replaced here by one that removes the record first."""
    home = Path(record.home)
    try:
        write_record(record)
    except OSError as exc:
        yield exc
        return
    previous = signal.getsignal(signal.SIGTERM)
    restore = previous if previous is not None else signal.SIG_DFL

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        remove_record(home, record.pid)
        signal.signal(signum, restore)
        signal.raise_signal(signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield None
    finally:
        signal.signal(signal.SIGTERM, restore)
        remove_record(home, record.pid)
