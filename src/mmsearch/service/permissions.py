"""What each route needs, in one table: the guard refuses any route that is not listed.

A key limited to collections never holds ``GLOBAL_ADMIN`` (``roles.allows``), and the
guard refuses it any route whose ``{name}``/``{collection}`` is outside its scope, so
this table decides both what a role may do and how far a key's scope reaches.

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
    ("GET", "/metrics"): Permission.GLOBAL_ADMIN,
    ("GET", "/"): Permission.SEARCH,
    ("GET", "/items/{collection}/{item_id}"): Permission.READ_ITEMS,
    ("GET", "/admin"): Permission.ADMIN,
    ("GET", "/admin/reports/{path:path}"): Permission.GLOBAL_ADMIN,
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
    # The entity graph answers like search: over the items the caller may see.
    ("GET", "/v1/collections/{name}/entities"): Permission.SEARCH,
    ("GET", "/v1/collections/{name}/graph/{entity}"): Permission.SEARCH,
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
    # Who may submit content may ask whether it would pass; the policies are the
    # workspace's, read-only here, and the answer names only what the content matched.
    ("POST", "/v1/moderate"): Permission.INGEST,
    # A collection-limited admin manages keys inside its own scope (admin.py checks
    # that a new key is no broader than its creator, and hides keys outside the scope).
    ("GET", "/v1/admin/keys"): Permission.ADMIN,
    ("POST", "/v1/admin/keys"): Permission.ADMIN,
    ("DELETE", "/v1/admin/keys/{key_id}"): Permission.ADMIN,
    ("GET", "/v1/admin/rules"): Permission.GLOBAL_ADMIN,
    ("PUT", "/v1/admin/rules/{rules_name}"): Permission.GLOBAL_ADMIN,
    ("DELETE", "/v1/admin/rules/{rules_name}"): Permission.GLOBAL_ADMIN,
    ("PUT", "/v1/admin/collections/{name}/default-rules"): Permission.ADMIN,
    ("GET", "/v1/admin/policies"): Permission.GLOBAL_ADMIN,  # workspace-wide, like rules
    ("PUT", "/v1/admin/policies/{policy_name}"): Permission.GLOBAL_ADMIN,
    # Review sees what moderation hides from search, so it is a permission of its own.
    ("GET", "/v1/collections/{name}/review"): Permission.MODERATE,
    ("GET", "/v1/collections/{name}/review/{item_id}"): Permission.MODERATE,
    ("GET", "/v1/collections/{name}/review/{item_id}/images/{n}"): Permission.MODERATE,
    ("POST", "/v1/collections/{name}/review/{item_id}"): Permission.MODERATE,
    ("POST", "/v1/collections/{name}/moderation/apply"): Permission.MODERATE,
    ("GET", "/v1/collections/{name}/review/{item_id}/banned/{n}"): Permission.MODERATE,
    ("GET", "/review/{collection}"): Permission.MODERATE,
    ("GET", "/review/{collection}/{item_id}"): Permission.MODERATE,
    ("PUT", "/v1/admin/collections/{name}/policy"): Permission.ADMIN,
    ("GET", "/v1/admin/rankers"): Permission.GLOBAL_ADMIN,
    ("DELETE", "/v1/admin/rankers/{ranker_name}"): Permission.GLOBAL_ADMIN,
    ("GET", "/v1/admin/audit"): Permission.ADMIN,  # a limited admin: its collections' events
    ("GET", "/v1/admin/audit/verify"): Permission.GLOBAL_ADMIN,
}
PUBLIC_PREFIXES = ("/static/",)
# Path parameters that name a collection the caller's key must be allowed to use.
COLLECTION_PARAMS = ("name", "collection")
# HTML pages answer an anonymous visitor with a redirect to the login page, not JSON.
PAGES = frozenset(
    {
        "/",
        "/items/{collection}/{item_id}",
        "/admin",
        "/review/{collection}",
        "/review/{collection}/{item_id}",
    }
)
