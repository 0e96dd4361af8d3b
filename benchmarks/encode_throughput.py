"""Encoder throughput: images/s (and texts/s) of the default and CLIP-family encoders.

Why this exists: the image encoder is usually what bounds ingest speed, and choosing
a CLIP model instead of the default ``visual`` descriptor buys cross-modal search at a
price in CPU time. This script puts a number on that price: the same decoded emoji
images go through ``visual`` and through a ViT-B-32-sized open_clip model (random
weights: the cost of a forward pass does not depend on the weights' values), both
through mmsearch's own encoder classes, at several batch sizes, and the ratio
``visual / ViT-B-32`` is printed for each. Texts/s of the CLIP text tower is measured
too, next to the default MiniLM text encoder as the baseline.

Images are decoded before any timer starts; each figure is the best of ``--repeats``
passes over all images after one warm-up batch, so a single slow pass caused by
other load on the host does not decide the result.

Usage::

    python benchmarks/encode_throughput.py --images 256 --batch-sizes 16 64
    MMSEARCH_TORCH_THREADS=1 python benchmarks/encode_throughput.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "emoji"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} logical CPUs"


def load_images(folder: Path, count: int) -> list[Any]:
    from mmsearch.media.images import load_image

    paths = sorted(folder.glob("*.png"))[:count]
    if len(paths) < count:
        sys.exit(f"only {len(paths)} images in {folder}; need {count}")
    return [load_image(path) for path in paths]


def load_texts(metadata: Path, count: int) -> list[str]:
    rows = json.loads(metadata.read_text(encoding="utf-8"))
    names = [str(row.get("name") or row.get("short_name") or "").lower() for row in rows]
    texts = [f"{name} emoji" for name in names if name]
    return (texts * (count // max(len(texts), 1) + 1))[:count]


def throughput(
    encode: Callable[[list[Any]], np.ndarray], inputs: list[Any], batch: int, repeats: int
) -> float:
    """Items per second: best of ``repeats`` full passes, after one warm-up batch."""
    encode(inputs[:batch])
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        for start in range(0, len(inputs), batch):
            encode(inputs[start : start + batch])
        best = min(best, time.perf_counter() - tick)
    return len(inputs) / best


def vit_b_32_encoder(threads: int) -> Any:
    """ViT-B-32 with random weights, wrapped in mmsearch's open_clip encoder class."""
    import open_clip

    from mmsearch.encoders.clip_open import OpenClipEncoder
    from mmsearch.encoders.device import device_from_env

    model, _, preprocess = open_clip.create_model_and_transforms(
        "ViT-B-32", pretrained=None, device=device_from_env()
    )
    return OpenClipEncoder(
        name="open_clip:ViT-B-32 (random weights)",
        model_id="open_clip:ViT-B-32",
        model=model,
        preprocess=preprocess,
        tokenizer=open_clip.get_tokenizer("ViT-B-32"),
        dim=open_clip.get_model_config("ViT-B-32")["embed_dim"],
        weights=[],
        num_threads=threads,
    )


def table(title: str, header: Sequence[str], rows: list[Sequence[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--folder", type=Path, default=DATASET / "google-64")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--text-baseline",
        choices=["minilm", "none"],
        default="minilm",
        help="the text encoder the CLIP text tower is compared with ('none' skips it)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    from mmsearch.encoders.base import create_encoder

    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"machine: {machine()}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, torch threads {threads}")
    from mmsearch.encoders.device import device_from_env

    device = device_from_env()
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else ""
    print(f"torch device for ViT-B-32 and MiniLM: {device}{gpu} (MMSEARCH_DEVICE)")
    images = load_images(args.folder, args.images)
    texts = load_texts(args.folder.parent / "emoji-datasource.json", args.images)
    print(f"inputs: {len(images)} images from {args.folder} (64x64 PNG), {len(texts)} emoji names")
    print()

    visual = create_encoder("visual")
    clip = vit_b_32_encoder(threads)
    results: dict[str, dict[int, float]] = {
        "visual images/s": {},
        "ViT-B-32 images/s": {},
        "ViT-B-32 texts/s": {},
    }
    runs: list[tuple[str, Callable[[list[Any]], np.ndarray], list[Any]]] = [
        ("visual images/s", visual.encode_images, images),
        ("ViT-B-32 images/s", clip.encode_images, images),
        ("ViT-B-32 texts/s", clip.encode_texts, texts),
    ]
    if args.text_baseline == "minilm":
        results["minilm texts/s"] = {}
        runs.append(("minilm texts/s", create_encoder("minilm").encode_texts, texts))
    for batch in args.batch_sizes:
        for name, encode, inputs in runs:
            results[name][batch] = throughput(encode, inputs, batch, args.repeats)
            print(f"  batch {batch:>4}  {name:<18} {results[name][batch]:>10,.1f}", flush=True)
    print()

    header = ["batch", "visual images/s", "ViT-B-32 images/s", "visual / ViT-B-32"]
    rows = [
        [
            str(batch),
            f"{results['visual images/s'][batch]:,.1f}",
            f"{results['ViT-B-32 images/s'][batch]:,.1f}",
            f"{results['visual images/s'][batch] / results['ViT-B-32 images/s'][batch]:,.1f}x",
        ]
        for batch in args.batch_sizes
    ]
    print(table("Images", header, rows))
    print()
    if "minilm texts/s" not in results:
        rows = [[str(b), f"{results['ViT-B-32 texts/s'][b]:,.1f}"] for b in args.batch_sizes]
        print(table("Texts", ["batch", "ViT-B-32 texts/s"], rows))
        return _write_json(args.json, threads, results)
    header = ["batch", "minilm texts/s", "ViT-B-32 texts/s", "minilm / ViT-B-32"]
    rows = [
        [
            str(batch),
            f"{results['minilm texts/s'][batch]:,.1f}",
            f"{results['ViT-B-32 texts/s'][batch]:,.1f}",
            f"{results['minilm texts/s'][batch] / results['ViT-B-32 texts/s'][batch]:,.2f}x",
        ]
        for batch in args.batch_sizes
    ]
    print(table("Texts", header, rows))
    return _write_json(args.json, threads, results)


def _write_json(path: Path | None, threads: int, results: dict[str, dict[int, float]]) -> int:
    if path:
        payload = {name: {str(b): v for b, v in by.items()} for name, by in results.items()}
        path.write_text(json.dumps({"threads": threads, **payload}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
