"""A tiny randomly initialised BERT cross-encoder, written to disk as users supply one.

Nothing is downloaded: the WordPiece vocabulary is written here (whole words of the
test catalogs, single letters and their ``##`` continuations), the tokenizer is built
from it, and a one-layer ``BertForSequenceClassification`` with one label is saved
beside it, the layout ``CrossEncoder.save`` produces. A wide weight initialisation
makes the random model's scores differ clearly between texts.
"""

from __future__ import annotations

from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"
WORDS = (
    "red",
    "blue",
    "green",
    "yellow",
    "black",
    "ceramic",
    "mug",
    "coffee",
    "tea",
    "kitchen",
    "office",
    "glider",
    "wing",
    "boundary",
    "layer",
    "heat",
    "transfer",
    "shock",
    "wave",
    "flow",
    "engine",
    "parts",
    "kit",
    "spare",
    "a",
    "for",
    "and",
    "the",
)


def save_tiny_cross_encoder(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *LETTERS]
    vocab += [f"##{c}" for c in LETTERS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 builds the WordPiece tokenizer from the vocabulary itself.
    tokenizer = BertTokenizer(vocab={token: n for n, token in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
        initializer_range=1.0,
    )
    config.num_labels = 1  # one relevance score per pair
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
