"""Typed settings, read from the environment (``MMSEARCH_*``) with offline defaults."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Defaults that work on a fresh machine with no network."""

    model_config = SettingsConfigDict(env_prefix="MMSEARCH_", extra="ignore")

    home: Path = Field(default=Path("./mmsearch-data"), description="workspace folder")
    text_encoder: str = "minilm"
    image_encoder: str = "visual"
    batch_size: int = Field(default=64, ge=1, le=4096)
    write_batch_rows: int = Field(default=2048, ge=1)
    candidates: int = Field(default=100, ge=1, le=10_000)
    rrf_k: int = Field(default=60, ge=1)
    ann_min_rows: int = Field(
        default=50_000,
        ge=256,
        description="rows from which a vector column gets an ANN index; below, search is exact",
    )
    max_image_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)


def load_settings(home: Path | None = None) -> Settings:
    settings = Settings()
    if home is not None:
        settings = settings.model_copy(update={"home": home})
    return settings
