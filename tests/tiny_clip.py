"""Tiny randomly initialised CLIP-family models, written to disk the way users supply them.

Nothing is downloaded: open_clip models are built from a small custom config and
saved as a ``local-dir`` folder; transformers models get a small CLIP BPE tokenizer
(single characters, no merges) saved next to them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_OPEN_CLIP_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
TINY_OPEN_CLIP_PREPROCESS: dict[str, Any] = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
}


def save_open_clip_folder(folder: Path, seed: int = 0) -> Path:
    """An ``open_clip_config.json`` + ``open_clip_model.safetensors`` folder."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_OPEN_CLIP_CFG)
    config = {"model_cfg": TINY_OPEN_CLIP_CFG, "preprocess_cfg": TINY_OPEN_CLIP_PREPROCESS}
    (folder / "open_clip_config.json").write_text(json.dumps(config), encoding="utf-8")
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    return folder


CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def char_tokenizer() -> Any:
    """A CLIPTokenizer over single characters (no merges), built entirely offline."""
    from transformers import CLIPTokenizer

    tokens = ["<|startoftext|>", "<|endoftext|>"]
    tokens += list(CHARS) + [f"{char}</w>" for char in CHARS]
    return CLIPTokenizer(vocab={token: index for index, token in enumerate(tokens)}, merges=[])


def _tiny_towers(kind: str, vocab_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 16,
    }
    if kind == "clip":
        text |= {"bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    vision = {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 16,
    }
    return text, vision


def save_hf_model(folder: Path, kind: str = "clip", seed: int = 0) -> Path:
    """A tiny CLIPModel or SiglipModel with tokenizer and image processor, save_pretrained'd."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = char_tokenizer()
    text, vision = _tiny_towers(kind, len(tokenizer))
    torch.manual_seed(seed)
    if kind == "clip":
        model: Any = CLIPModel(
            CLIPConfig(text_config=text, vision_config=vision, projection_dim=24)
        )
        processor: Any = CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    elif kind == "siglip":
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    else:
        raise ValueError(kind)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
