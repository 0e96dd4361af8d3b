"""The web UI: search, item, admin and review pages (Jinja2), the API reference, assets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from mmsearch import __version__
from mmsearch.builds.lifecycle import build_status, canary_of, switch_history
from mmsearch.collection_state import CollectionState
from mmsearch.errors import MMSearchError
from mmsearch.governance.roles import Permission
from mmsearch.manifest import BuildManifest
from mmsearch.monitoring.drift_checks import last_results
from mmsearch.service import reviewing
from mmsearch.service.access import SESSION_COOKIE, AccessControl, request_caller
from mmsearch.service.charts import bucket_by_minute, canary_svg, latency_svg, volume_svg
from mmsearch.service.errors import NotFound
from mmsearch.service.items import get_item
from mmsearch.service.routers.collections import summary
from mmsearch.service.state import ServiceState, state_of
from mmsearch.workspace import CollectionDir

router = APIRouter(include_in_schema=False)
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
MAX_REPORTS = 50


def mount_static(app: FastAPI, folder: Path) -> None:
    app.mount("/static", StaticFiles(directory=str(folder)), name="static")


def page(request: Request, template: str, **context: Any) -> HTMLResponse:
    """Render a page; a signed-in page carries the CSRF token its scripts send with writes."""
    context.setdefault("version", __version__)
    access: AccessControl = request.app.state.access
    token = request.cookies.get(SESSION_COOKIE)
    caller = request_caller(request)
    if token and caller.via == "session":
        context["csrf_token"] = access.sessions.csrf_token(token)
        context["signed_in"] = caller.key_id
    # Links only to pages the caller may open: a reader is not shown doors that answer 403.
    context.setdefault("show_admin", caller.may(Permission.ADMIN))
    context.setdefault("show_metrics", caller.may(Permission.GLOBAL_ADMIN))
    return TEMPLATES.TemplateResponse(
        request, template, context, headers={"Cache-Control": "no-store"}
    )


@router.get("/", response_class=HTMLResponse)
def search_page(request: Request, collection: str | None = None) -> HTMLResponse:
    caller = request_caller(request)
    names = [n for n in state_of(request).workspace.collection_names() if caller.may_use(n)]
    current = collection if collection in names else (names[0] if names else None)
    return page(request, "search.html", collections=names, collection=current)


@router.get("/items/{collection}/{item_id}", response_class=HTMLResponse)
def item_page(collection: str, item_id: str, request: Request) -> HTMLResponse:
    item = get_item(state_of(request), collection, item_id, request_caller(request))
    provenance = {
        key: item.get(key)
        for key in ("source_file", "source_row", "record_sha256", "ingest_run", "ingested_at")
    }
    attributes = {
        spec["field"]: item.get(spec["column"])
        for spec in summary(state_of(request), collection, request_caller(request))["attributes"]
    }
    return page(
        request,
        "item.html",
        collection=collection,
        item=item,
        attributes=attributes,
        provenance=provenance,
    )


@router.get("/review/{collection}", response_class=HTMLResponse)
def review_page(collection: str, request: Request, state: str = "pending") -> HTMLResponse:
    """The review queue of a collection (a reviewer's items only: their ACL groups)."""
    found = reviewing.queue(
        state_of(request), collection, request_caller(request), None if state == "all" else state
    )
    return page(request, "review.html", collection=collection, queue=found["items"], state=state)


@router.get("/review/{collection}/{item_id}", response_class=HTMLResponse)
def review_item_page(collection: str, item_id: str, request: Request) -> HTMLResponse:
    """One item beside the banned images it matched, the rule, the distance and the text
    cues; approve and reject post to the review API with the page's CSRF token."""
    item = reviewing.show(state_of(request), collection, item_id, request_caller(request))
    decision = item["decision"]
    evidence = [
        {
            **found,
            "banned_url": (
                f"/v1/collections/{collection}/review/{item_id}/banned/{n}"
                if _banned_file(found)
                else None
            ),
        }
        for n, found in enumerate(decision.get("evidence", []))
    ]
    return page(
        request,
        "review_item.html",
        collection=collection,
        item=item,
        decision=decision,
        evidence=evidence,
    )


def _banned_file(evidence: dict[str, Any]) -> bool:
    """A banned-image match of a file (a listed hash, "hash #N", has no picture)."""
    label = str(evidence.get("banned") or "")
    return (
        evidence.get("condition") == "banned_images"
        and bool(label)
        and not (label.startswith("hash #"))
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request) -> HTMLResponse:
    state = state_of(request)
    caller = request_caller(request)
    collections = []
    for name in state.workspace.collection_names():
        if not caller.may_use(name):
            continue  # a collection-limited admin sees its own collections only
        try:
            info = summary(state, name, caller)
            folder = state.workspace.collection(name)
            snapshot = folder.state()
            info["build_manifests"] = [
                _build_row(folder.manifest(build), snapshot)
                for build in reversed(folder.build_ids())
            ]
            info.update(_canary_panel(state, folder))
        except MMSearchError as exc:
            info = {"name": name, "error": str(exc), "build_manifests": []}
        collections.append(info)
    if not caller.global_admin:
        # The charts, reports and drift panel span every collection: admins of all only.
        return page(request, "admin.html", collections=collections, scoped=True)
    buckets = bucket_by_minute(state.metrics.history.samples(), time.time())
    total = sum(b.count for b in buckets)
    zero = sum(b.zero for b in buckets)
    return page(
        request,
        "admin.html",
        collections=collections,
        scoped=False,
        reports=_reports(state.reports_dir),
        volume_svg=volume_svg(buckets),
        latency_svg=latency_svg(buckets),
        last_hour={"searches": total, "zero": zero, "cache": state.query_cache.stats()},
        drift=last_results(state.settings.home),
    )


def _canary_panel(state: ServiceState, folder: CollectionDir) -> dict[str, Any]:
    """The canary beside live (this worker's counts, as a chart) and the recent switches,
    automatic stops included: what an operator checks before promoting or rolling back."""
    snapshot = folder.state()
    canary = canary_of(snapshot)
    panel: dict[str, Any] = {"canary": canary, "switches": switch_history(folder, 10)[::-1]}
    if canary is not None:
        figures = state.canaries.snapshot(folder.name)
        live = snapshot.aliases.live or ""
        panel["canary_figures"] = figures
        panel["canary_svg"] = canary_svg(figures, live, canary.build_id)
    return panel


def _build_row(manifest: BuildManifest, snapshot: CollectionState) -> dict[str, Any]:
    gate = manifest.gate
    stored = manifest.as_json()  # the file as it is, for the page's "manifest" view
    stored.pop("runs", None)
    return {
        "status": build_status(snapshot, manifest),
        "gate": gate.verdict if gate is not None else None,
        "gate_reasons": list(gate.reasons) if gate is not None else [],
        "build_id": manifest.build_id,
        "created_at": manifest.created_at,
        "updated_at": manifest.updated_at,
        "items": manifest.counts.items,
        "encoders": {r: e.spec for r, e in manifest.encoders.items()},
        "runs": len(manifest.runs),
        "errors": manifest.errors.count,
        "json": json.dumps(stored, indent=2, default=str),
    }


def _reports(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )[:MAX_REPORTS]
    return [
        {
            "path": p.relative_to(folder).as_posix(),
            "bytes": p.stat().st_size,
            "modified": time.strftime("%Y-%m-%d %H:%M", time.gmtime(p.stat().st_mtime)),
        }
        for p in files
    ]


@router.get("/admin/reports/{path:path}")
def report_file(path: str, request: Request) -> Response:
    folder = state_of(request).reports_dir.resolve()
    target = (folder / path).resolve()
    if folder not in target.parents or not target.is_file():
        raise NotFound(f"No report '{path}' under {folder}.")
    media = (
        "text/plain; charset=utf-8" if target.suffix in {".md", ".jsonl", ".txt", ".csv"} else None
    )
    return FileResponse(target, media_type=media)


@router.get("/docs", response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    return page(request, "docs.html")
