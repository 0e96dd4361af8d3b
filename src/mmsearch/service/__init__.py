"""The HTTP service: JSON API, web UI and monitoring endpoints in one FastAPI app."""

from __future__ import annotations

from mmsearch.service.app import create_app

__all__ = ["create_app"]
