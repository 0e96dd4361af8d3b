"""The encode step of a chunk on Ray Data: ``map_batches`` over an actor pool.

Each actor builds the run's encoders once from their spec strings (one model per
actor, on a GPU when the cluster has them) and runs the very ``ChunkEncoder`` the
local executor runs on its batch: the same ``decode_image(max_side=...)``, hashes,
OCR and record building, so rows and row errors are the same by construction and
only the process differs. Results travel back as Arrow IPC bytes and are put back in
the chunk's order before the engine writes them, so what lands in the table, and in
what order, does not depend on which actor finished first.

Ray is an optional extra and is imported only here; a Ray instance this executor
started is shut down by ``close``; one that was already running is left alone.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa

from mmsearch.catalog.item import Item, RowError
from mmsearch.config import Settings
from mmsearch.encoders.base import _REGISTRY, parse_spec
from mmsearch.encoders.device import DEVICE_ENV
from mmsearch.ingest.encoders import EncoderSet
from mmsearch.ingest.executors import ExecutorError
from mmsearch.ingest.pipeline import ChunkEncoder, Pending

INSTALL_HINT = 'pip install "mmsearch[ray]"'
_BUILTIN_PREFIX = "mmsearch.encoders."


def import_ray() -> ModuleType:
    """Ray with its Data library, or an error that names the extra to install."""
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ExecutorError(
            f"--executor ray needs Ray Data, which is not installed: {INSTALL_HINT}"
        ) from exc
    return ray


def plugin_modules(specs: dict[str, str]) -> list[str]:
    """Modules that registered the run's encoder families outside mmsearch.

    An actor is a fresh process: a plug-in encoder exists there only once the module
    that registers it is imported, so the actor imports these before building encoders
    (they must be importable on the workers, e.g. through the runtime env)."""
    modules = []
    for spec in specs.values():
        factory = _REGISTRY.get(parse_spec(spec)[0])
        module = getattr(factory, "__module__", "") if factory else ""
        if module and not module.startswith(_BUILTIN_PREFIX) and module not in modules:
            modules.append(module)
    return modules


class EncodeActor:
    """One model set per actor; turns a batch of pickled ``Pending`` into encoded rows."""

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

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        positions = [int(p) for p in batch["position"]]
        pending: list[Pending] = [pickle.loads(blob) for blob in batch["pending"]]
        before = dict(self.timings)
        errors: list[RowError] = []
        table, written = self.chunks.encode(pending, errors, lambda items, images: None)
        at = {id(entry.item): position for entry, position in zip(pending, positions, strict=True)}
        result = {
            "table": b"" if table is None else _to_ipc(table),
            "written": [at[id(item)] for item in written],
            "errors": errors,
            "timings": {k: v - before.get(k, 0.0) for k, v in self.timings.items()},
        }
        out = np.empty(1, dtype=object)
        out[0] = pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL)
        return {"first": np.array([min(positions)], dtype=np.int64), "result": out}


class RayExecutor:
    """The ``ChunkExecutor`` that runs each chunk as one Ray Data ``map_batches`` job."""

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

    def _connect(self) -> None:
        """Join (or start) Ray at the first chunk to encode: a run whose rows are all
        unchanged never pays for it."""
        if self._ready:
            return
        if not self.ray.is_initialized():
            self._init(self.address)
        context = self.ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI shows its own bar
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

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False

    def encode(
        self,
        pending: list[Pending],
        errors: list[RowError],
        on_batch: Callable[[int, int], None],
    ) -> tuple[pa.Table | None, list[Item]]:
        if not pending:
            return None, []
        self._connect()
        batch_size = self.settings.batch_size
        batches = -(-len(pending) // batch_size)
        rows = [
            {"position": n, "pending": pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)}
            for n, entry in enumerate(pending)
        ]
        dataset = self.ray.data.from_items(rows, override_num_blocks=min(batches, 4 * self.cpus))
        on_gpu = self.gpus > 0
        encoded = dataset.map_batches(
            EncodeActor,
            fn_constructor_args=(
                self.settings,
                self.specs,
                self.modules,
                self.schema,
                self.run_id,
                on_gpu,
            ),
            batch_size=batch_size,
            batch_format="numpy",
            compute=self.ray.data.ActorPoolStrategy(
                size=max(1, min(self.gpus if on_gpu else self.cpus, batches))
            ),
            num_gpus=1 if on_gpu else 0,
        )
        results: list[tuple[int, dict[str, Any]]] = []
        for out in encoded.iter_batches(batch_size=None, batch_format="numpy"):
            for first, blob in zip(out["first"], out["result"], strict=True):
                result = pickle.loads(blob)
                results.append((int(first), result))
                images = sum(len(pending[p].blobs) for p in result["written"])
                on_batch(len(result["written"]) + len(result["errors"]), images)
        return self._join(pending, results, errors)

    def _join(
        self,
        pending: list[Pending],
        results: list[tuple[int, dict[str, Any]]],
        errors: list[RowError],
    ) -> tuple[pa.Table | None, list[Item]]:
        """Batches back in chunk order: the rows, items and errors the local path gives."""
        tables: list[pa.Table] = []
        written: list[Item] = []
        for _first, result in sorted(results, key=lambda found: found[0]):
            errors.extend(result["errors"])
            written.extend(pending[p].item for p in result["written"])
            if result["table"]:
                tables.append(_from_ipc(result["table"]))
            for key, seconds in result["timings"].items():
                self.timings[key] = self.timings.get(key, 0.0) + seconds
        if not tables:
            return None, written
        return pa.concat_tables(tables).combine_chunks(), written


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(blob: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(blob)) as reader:
        return reader.read_all()
