"""MiniLM on onnxruntime: the exported graph (``onnx_export``) fed by the model's own
``tokenizer.json``.

Neither torch nor transformers is imported to encode, only onnxruntime and tokenizers,
so a process that only searches starts faster; torch is needed once, to export.
The version is the source weights' digest plus the backend and export recipe
(``...@sha256:<weights>+onnx-int8-r1``): a different backend gives (slightly)
different vectors, so for lineage it is a different model, and a collection records
which one made its vectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mmsearch.encoders.base import l2_normalise, unsupported_modality
from mmsearch.encoders.onnx_export import RECIPE, OnnxBackend, exported_model
from mmsearch.errors import EncoderError

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_MAX_TOKENS = 256


class OnnxTextEncoder:
    """A sentence-transformers model (transformer, mean pooling, normalise) on onnxruntime."""

    modalities = frozenset({"text"})

    def __init__(
        self,
        name: str,
        model_id: str,
        model_dir: Path,
        source_sha256: str,
        backend: OnnxBackend,
    ):
        import onnxruntime
        from tokenizers import Tokenizer

        self.name = name
        self.model_id = model_id
        self.backend: OnnxBackend = backend
        onnx_path, self.export = exported_model(model_dir, model_id, source_sha256, backend)
        self.version = f"{model_id}@sha256:{source_sha256}+{backend}-{RECIPE}"
        self.batch_size = 64
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=_max_tokens(model_dir))
        pad_id = self._tokenizer.token_to_id("[PAD]")
        self._tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        # Idle threads sleep instead of spinning: on a shared machine (an ingest beside a
        # server) spinning threads take the cores the other work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        width = self._session.get_outputs()[0].shape[-1]
        if not isinstance(width, int):
            raise EncoderError(f"{onnx_path}: the embedding width is not fixed ({width!r}).")
        self.dim = width

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of similar lengths pad less.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start : start + self.batch_size]
            for index, vector in zip(chosen, self._run([texts[i] for i in chosen]), strict=True):
                vectors[index] = vector
        return l2_normalise(np.stack(vectors))

    def _run(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (output,) = self._session.run(["embedding"], feeds)
        return np.asarray(output, dtype=np.float32)

    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        raise unsupported_modality(self, "image")


def _max_tokens(model_dir: Path) -> int:
    """sentence-transformers' ``max_seq_length``: longer texts are cut there, as with torch."""
    path = model_dir / "sentence_bert_config.json"
    if not path.is_file():
        return DEFAULT_MAX_TOKENS
    try:
        return int(json.loads(path.read_text(encoding="utf-8"))["max_seq_length"])
    except (ValueError, KeyError, TypeError) as exc:
        raise EncoderError(f"{path}: no readable max_seq_length ({exc}).") from exc
