"""Where torch models run, chosen once for every torch-backed encoder.

``MMSEARCH_DEVICE``: ``cpu`` (the default, so results never depend on the machine by
accident), ``cuda``, ``cuda:N``, or ``auto`` (a GPU when torch sees one).
"""

from __future__ import annotations

import os

from mmsearch.errors import EncoderError

DEVICE_ENV = "MMSEARCH_DEVICE"


def device_from_env() -> str:
    """The torch device named by ``MMSEARCH_DEVICE``; ``auto`` means a GPU if torch sees one."""
    import torch

    raw = os.environ.get(DEVICE_ENV, "cpu").strip().lower() or "cpu"
    if raw == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if raw == "cpu":
        return raw
    if raw.startswith("cuda"):
        if not torch.cuda.is_available():
            raise EncoderError(
                f"{DEVICE_ENV}={raw} but torch sees no CUDA device; use 'cpu' or 'auto'."
            )
        return raw
    raise EncoderError(f"{DEVICE_ENV} must be cpu, cuda, cuda:N or auto (got {raw!r}).")
