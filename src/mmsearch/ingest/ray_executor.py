"""The encode step of a chunk on Ray: one pool of encoder actors for the whole run.

Each actor builds the run's encoders once from their spec strings (one model set per
actor, on a GPU when the cluster has them) and runs the very ``ChunkEncoder`` the
local executor runs on its batch: the same ``decode_image(max_side=...)``, hashes,
OCR and record building, so rows and row errors are the same by construction and
only the process differs. Results travel back as Arrow IPC bytes and are put back in
the chunk's order before the engine writes them, so what lands in the table, and in
what order, does not depend on which actor finished first.

Why Ray Core actors and not Ray Data ``map_batches``: the engine commits one chunk at
a time (that is what makes a killed run resumable), so each chunk would be its own
dataset, and Ray Data's actor pool lives only as long as one dataset's execution
(``ActorPoolMapOperator.start`` creates its actors, ``shutdown`` kills them; nothing
is shared between datasets in Ray 2.60): every chunk would start a new pool and load
every model again. One dataset for the whole run would instead hold every chunk's
pending image bytes at once and take the per-chunk commits away. So the pool is made
of plain actors: created at the first chunk that has something to encode, reused by
every chunk, killed by ``close``. It has one actor per GPU (``num_gpus=1``) when the
cluster has GPUs, else one per CPU (``num_cpus=1``), and never more than a full chunk
has batches nor ``MAX_ACTORS``. A chunk is cut into batches of ``batch_size`` items,
each sent to the least busy actor whose models have loaded (so a pool the cluster can
place only in part runs on the part that started), at most two per actor at a time
(one encoding, one queued, so an actor does not wait for the driver between batches).

An actor that dies (killed, out of memory, its node lost) fails the run with an
``ExecutorError`` at once; nothing of the chunk was written, so the same command
resumes after the last committed chunk. An error raised by the encoding code itself
is raised as its own type, as the local executor would raise it.

Ray is an optional extra and is imported only here; a Ray instance this executor
started is shut down by ``close``; one that was already running is left alone.
"""

from __future__ import annotations

import importlib
import os
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pyarrow as pa

from mmsearch.catalog.item import Item, RowError
from mmsearch.config import Settings
from mmsearch.encoders.base import parse_spec, registered_module
from mmsearch.encoders.device import DEVICE_ENV
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.ingest.executors import ExecutorError
from mmsearch.ingest.pipeline import ChunkEncoder, Pending

INSTALL_HINT = 'pip install "mmsearch[ray]"'
_BUILTIN_PREFIX = "mmsearch.encoders."
MAX_ACTORS = 32
"""At most this many actors (model sets) per run, whatever the cluster's size."""
IN_FLIGHT_PER_ACTOR = 2
"""Batches sent to one actor at a time: the one it encodes and the next one."""
LOAD_HINT = "Plug-in encoder modules must be importable on the Ray workers."
ENCODE_HINT = (
    "If it ran out of memory, lower MMSEARCH_BATCH_SIZE or MMSEARCH_INGEST_MEMORY_MB, "
    "or give the workers more memory."
)


def import_ray() -> ModuleType:
    """Ray, or an error that names the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(
            f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}"
        ) from exc
    return ray


def plugin_modules(specs: dict[str, str]) -> list[str]:
    """Modules that registered the run's encoder families outside mmsearch.

    An actor is a fresh process: a plug-in encoder exists there only once the module
    that registers it is imported, so the actor imports these before building encoders
    (they must be importable on the workers, e.g. through the runtime env)."""
    modules = []
    for spec in specs.values():
        module = registered_module(parse_spec(spec)[0])
        if module and not module.startswith(_BUILTIN_PREFIX) and module not in modules:
            modules.append(module)
    return modules


class EncodeActor:
    """One model set per actor, for the whole run; encodes one batch of ``Pending``
    per call."""

    def __init__(
        self,
        settings: Settings,
        specs: dict[str, str],
        modules: list[str],
        schema: pa.Schema,
        run_id: str,
        on_gpu: bool,
    ) -> None:
        for module in modules:
            importlib.import_module(module)
        if on_gpu and not os.environ.get(DEVICE_ENV):
            os.environ[DEVICE_ENV] = "cuda"  # Ray already set CUDA_VISIBLE_DEVICES
        self.timings: dict[str, float] = dict.fromkeys(
            ("decode", "encode_text", "encode_image", "write"), 0.0
        )
        self.chunks = ChunkEncoder(settings, EncoderSet.load(specs), schema, run_id, self.timings)

    def ready(self) -> int:
        """Answers once the models are loaded; the actor's process id."""
        return os.getpid()

    def encode(self, batch: list[Pending]) -> dict[str, Any]:
        """The batch's rows (Arrow IPC), the positions in ``batch`` of the items that
        encoded, the row errors of those that did not, and the seconds this took."""
        before = dict(self.timings)
        errors: list[RowError] = []
        table, written = self.chunks.encode(batch, errors, lambda items, images: None)
        at = {id(entry.item): position for position, entry in enumerate(batch)}
        return {
            "table": b"" if table is None else _to_ipc(table),
            "written": [at[id(item)] for item in written],
            "errors": errors,
            "timings": {k: v - before.get(k, 0.0) for k, v in self.timings.items()},
        }


class RayExecutor:
    """The ``ChunkExecutor`` that spreads each chunk's batches over one actor pool."""

    def __init__(
        self,
        settings: Settings,
        encoders: EncoderSet,
        schema: pa.Schema,
        run_id: str,
        timings: dict[str, float],
        *,
        address: str | None = None,
    ) -> None:
        self.ray = import_ray()
        self.settings = settings
        self.specs = dict(encoders.specs)
        self.modules = plugin_modules(self.specs)
        self.schema = schema
        self.run_id = run_id
        self.timings = timings
        self.address = address
        self._started = False
        self._ready = False
        self.gpus = 0
        self.cpus = 1
        self.actors: list[Any] = []
        self.pids: dict[int, int] = {}  # actor number -> process id, once started
        self._starting: dict[Any, int] = {}  # ready() reference -> actor number
        self._busy: list[int] = []  # batches in flight, per actor

    def _connect(self) -> None:
        """Join (or start) Ray at the first chunk to encode: a run whose rows are all
        unchanged never pays for it."""
        if self._ready:
            return
        if not self.ray.is_initialized():
            self._init(self.address)
        resources = self.ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = max(1, int(resources.get("CPU", 1)))
        self._ready = True

    def _init(self, address: str | None) -> None:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address is None:  # a local instance: never more CPUs than this machine has
            options["num_cpus"] = os.cpu_count() or 1
        else:
            options["address"] = address
        try:
            self.ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a local instance"
            raise ExecutorError(
                f"Could not start or reach Ray at {where}: {exc}. Check --ray-address "
                "('auto' joins the cluster of `ray start`; 'ray://host:10001' a remote one)."
            ) from exc
        self._started = True

    def pool_size(self) -> int:
        """One actor per GPU (each also takes a CPU, for decoding), else one per CPU;
        never more than a full chunk has batches, nor than ``MAX_ACTORS``."""
        slots = min(self.gpus, self.cpus) if self.gpus else self.cpus
        per_chunk = -(-self.settings.write_batch_rows // self.settings.batch_size)
        return max(1, min(slots, per_chunk, MAX_ACTORS))

    def _start_pool(self) -> None:
        """The run's actors, started once; models load in each while the driver goes on."""
        if self.actors:
            return
        on_gpu = self.gpus > 0
        resources = {"num_gpus": 1, "num_cpus": 1} if on_gpu else {"num_cpus": 1}
        actor_class = self.ray.remote(EncodeActor).options(max_restarts=0, **resources)
        for number in range(self.pool_size()):
            actor = actor_class.remote(
                self.settings, self.specs, self.modules, self.schema, self.run_id, on_gpu
            )
            self.actors.append(actor)
            self._busy.append(0)
            self._starting[actor.ready.remote()] = number

    def close(self) -> None:
        if self.ray.is_initialized():
            for actor in self.actors:
                self.ray.kill(actor, no_restart=True)
        self.actors, self.pids, self._starting, self._busy = [], {}, {}, []
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False
        self._ready = False

    def encode(
        self,
        pending: list[Pending],
        errors: list[RowError],
        on_batch: Callable[[int, int], None],
    ) -> tuple[pa.Table | None, list[Item]]:
        if not pending:
            return None, []
        self._connect()
        self._start_pool()
        size = self.settings.batch_size
        batches = [pending[start : start + size] for start in range(0, len(pending), size)]
        todo = deque(enumerate(batches))
        running: dict[Any, tuple[int, int]] = {}  # reference -> (batch number, actor)
        results: list[tuple[int, dict[str, Any]]] = []
        while todo or running:
            self._dispatch(todo, running)
            done, _ = self.ray.wait([*running, *self._starting], num_returns=1)
            ref = done[0]
            if ref in self._starting:
                number = self._starting.pop(ref)
                self.pids[number] = self._get(ref, number, "while loading its models", LOAD_HINT)
                continue
            index, number = running.pop(ref)
            self._busy[number] -= 1
            result = self._get(ref, number, "while encoding", ENCODE_HINT)
            results.append((index, result))
            batch = batches[index]
            images = sum(len(batch[p].blobs) for p in result["written"])
            on_batch(len(result["written"]) + len(result["errors"]), images)
        return self._join(batches, results, errors)

    def _dispatch(self, todo: deque[tuple[int, list[Pending]]], running: dict) -> None:
        """Batches to the least busy started actors, up to ``IN_FLIGHT_PER_ACTOR`` each."""
        while todo and self.pids:
            number = min(self.pids, key=lambda n: self._busy[n])
            if self._busy[number] >= IN_FLIGHT_PER_ACTOR:
                return
            index, batch = todo.popleft()
            running[self.actors[number].encode.remote(batch)] = (index, number)
            self._busy[number] += 1

    def _get(self, ref: Any, number: int, doing: str, hint: str) -> Any:
        """The result of an actor call; a dead actor is an ``ExecutorError``, an error
        raised by the encoding code is raised as itself."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.RayTaskError as exc:
            if isinstance(exc.cause, Exception):  # the actor's own error, its traceback chained
                raise exc.cause from exc
            raise exc.as_instanceof_cause() from None
        except exceptions.RayError as exc:
            pid = self.pids.get(number)
            who = f"Ray encoder actor {number + 1}/{len(self.actors)}" + (
                f" (pid {pid})" if pid else ""
            )
            raise ExecutorError(
                f"{who} died {doing} ({type(exc).__name__}: {_reason(exc)}). Nothing of this "
                f"chunk was written; the same command resumes after the last committed chunk. "
                f"{hint}"
            ) from exc

    def _join(
        self,
        batches: list[list[Pending]],
        results: list[tuple[int, dict[str, Any]]],
        errors: list[RowError],
    ) -> tuple[pa.Table | None, list[Item]]:
        """Batches back in chunk order: the rows, items and errors the local path gives."""
        tables: list[pa.Table] = []
        written: list[Item] = []
        for index, result in sorted(results, key=lambda found: found[0]):
            errors.extend(result["errors"])
            written.extend(batches[index][p].item for p in result["written"])
            if result["table"]:
                tables.append(_from_ipc(result["table"]))
            for key, seconds in result["timings"].items():
                self.timings[key] = self.timings.get(key, 0.0) + seconds
        if not tables:
            return None, written
        return pa.concat_tables(tables).combine_chunks(), written


def _reason(exc: Exception) -> str:
    """What stopped an actor, in a line: the error its ``__init__`` raised (the last line
    of that traceback), or Ray's account of the process's death without the actor's ids."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if getattr(exc, "actor_init_failed", False) and lines:
        return lines[-1]
    ids = ("class_name:", "actor_id:", "pid:", "name:", "namespace:", "ip:")
    told = [line for line in lines if not line.startswith(ids)]
    if len(told) > 1 and told[0].startswith("The actor died unexpectedly"):
        told = told[1:]  # the same words for every death; what follows says which
    text = " ".join(told)
    return text if len(text) <= 400 else text[:399] + "…"


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(blob: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(blob)) as reader:
        return reader.read_all()
