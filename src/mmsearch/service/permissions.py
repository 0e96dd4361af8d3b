"""What each route needs, in one table: the guard refuses any route that is not listed.

Keeping the table apart from the routes makes it reviewable at a glance and lets a
test check that every route of the app has an entry (fail closed: an unlisted route
answers 403 to everyone, never 200 to anyone).
"""

from __future__ import annotations

from mmsearch.governance.roles import Permission

PUBLIC = None  # no key needed: liveness, the API description, static assets, the login page

ROUTE_PERMISSIONS: dict[tuple[str, str], Permission | None] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/v1/session"): PUBLIC,  # the login itself checks the key it is given
    ("DELETE", "/v1/session"): PUBLIC,
    ("GET", "/metrics"): Permission.ADMIN,
    ("GET", "/"): Permission.SEARCH,
    ("GET", "/items/{collection}/{item_id}"): Permission.READ_ITEMS,
    ("GET", "/admin"): Permission.ADMIN,
    ("GET", "/admin/reports/{path:path}"): Permission.ADMIN,
    ("POST", "/v1/collections/{name}/search"): Permission.SEARCH,
    ("GET", "/v1/collections"): Permission.READ_COLLECTIONS,
    ("GET", "/v1/collections/{name}"): Permission.READ_COLLECTIONS,
    ("GET", "/v1/collections/{name}/builds/{build_id}"): Permission.ADMIN,
    ("GET", "/v1/collections/{name}/builds"): Permission.ADMIN,
    ("POST", "/v1/collections/{name}/builds/{build_id}/publish"): Permission.ADMIN,
    ("POST", "/v1/collections/{name}/promote"): Permission.ADMIN,
    ("GET", "/v1/collections/{name}/canary"): Permission.ADMIN,
    ("PUT", "/v1/collections/{name}/canary"): Permission.ADMIN,
    ("DELETE", "/v1/collections/{name}/canary"): Permission.ADMIN,
    ("PUT", "/v1/collections/{name}/canary/guards"): Permission.ADMIN,
    ("POST", "/v1/collections/{name}/rollback"): Permission.ADMIN,
    ("GET", "/v1/collections/{name}/facets"): Permission.FACETS,
    ("GET", "/v1/collections/{name}/items/{item_id}"): Permission.READ_ITEMS,
    ("PUT", "/v1/collections/{name}/items/{item_id}"): Permission.WRITE_ITEMS,
    ("DELETE", "/v1/collections/{name}/items/{item_id}"): Permission.WRITE_ITEMS,
    ("GET", "/v1/collections/{name}/items/{item_id}/images/{n}"): Permission.READ_ITEMS,
    ("GET", "/v1/collections/{name}/items/{item_id}/similar"): Permission.READ_ITEMS,
    ("GET", "/v1/collections/{name}/items/{item_id}/lineage"): Permission.READ_ITEMS,
    ("GET", "/v1/collections/{name}/lineage"): Permission.ADMIN,
    ("GET", "/v1/collections/{name}/kpis"): Permission.ADMIN,
    ("GET", "/v1/collections/{name}/drift"): Permission.ADMIN,
    ("POST", "/v1/collections/{name}/ingest"): Permission.INGEST,
    ("GET", "/v1/jobs"): Permission.INGEST,
    ("GET", "/v1/jobs/{job_id}"): Permission.INGEST,
    ("POST", "/v1/feedback"): Permission.FEEDBACK,
    ("GET", "/v1/admin/keys"): Permission.ADMIN,
    ("POST", "/v1/admin/keys"): Permission.ADMIN,
    ("DELETE", "/v1/admin/keys/{key_id}"): Permission.ADMIN,
    ("GET", "/v1/admin/rules"): Permission.ADMIN,
    ("PUT", "/v1/admin/rules/{rules_name}"): Permission.ADMIN,
    ("DELETE", "/v1/admin/rules/{rules_name}"): Permission.ADMIN,
    ("PUT", "/v1/admin/collections/{name}/default-rules"): Permission.ADMIN,
    ("GET", "/v1/admin/rankers"): Permission.ADMIN,
    ("DELETE", "/v1/admin/rankers/{ranker_name}"): Permission.ADMIN,
    ("GET", "/v1/admin/audit"): Permission.ADMIN,
    ("GET", "/v1/admin/audit/verify"): Permission.ADMIN,
}
PUBLIC_PREFIXES = ("/static/",)
# Path parameters that name a collection the caller's key must be allowed to use.
COLLECTION_PARAMS = ("name", "collection")
# HTML pages answer an anonymous visitor with a redirect to the login page, not JSON.
PAGES = frozenset({"/", "/items/{collection}/{item_id}", "/admin"})
