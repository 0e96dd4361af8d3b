"""Typed settings, read from the environment (``MMSEARCH_*``) with offline defaults."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where the workspace used to default to: a folder in whatever directory a command ran
# in, so a command run from elsewhere found nothing. Still used when it is there.
LEGACY_HOME = Path("mmsearch-data")


def default_home() -> Path:
    """The per-user data folder (``~/.local/share/mmsearch`` on Linux, honouring
    ``XDG_DATA_HOME``): the same from every current folder, so the command the demo
    suggests works wherever it is typed."""
    return Path(platformdirs.user_data_dir("mmsearch", appauthor=False))


AnnIndexType = Literal["ivf_hnsw_sq", "ivf_pq", "flat"]


class AnnSearch(BaseModel):
    """How one vector search uses the ANN index, where a request overrides its collection.

    Every field left None takes the collection's value, then the settings' (``ann_*``).
    Why these knobs: on quantised indexes recall and latency trade against each other,
    and which trade is right depends on the catalog (docs/BENCHMARKS.md has a table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nprobes: int | None = Field(
        default=None, ge=1, le=4096, description="IVF partitions searched (more: recall, time)"
    )
    refine_factor: int | None = Field(
        default=None,
        ge=1,
        le=100,
        description="re-score k x this many index candidates exactly (more: recall, time)",
    )
    ef: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="HNSW candidate list size per partition (at least k x refine_factor)",
    )
    exact: bool | None = Field(
        default=None, description="bypass the ANN index: exact search over every row"
    )

    def over(self, base: AnnSearch) -> AnnSearch:
        """These values where set, ``base``'s elsewhere."""
        return base.model_copy(update=self.model_dump(exclude_none=True))


class Settings(BaseSettings):
    """Defaults that work on a fresh machine with no network."""

    model_config = SettingsConfigDict(env_prefix="MMSEARCH_", extra="ignore")

    home: Path = Field(
        default_factory=default_home,
        description="workspace folder (default: the per-user data folder)",
    )
    text_encoder: str = Field(
        default="minilm:auto",
        description="text encoder of new collections (minilm:auto: ONNX if installed, else torch)",
    )
    image_encoder: str = "visual"
    batch_size: int = Field(default=64, ge=1, le=4096)
    write_batch_rows: int = Field(
        default=2048, ge=1, description="rows per committed chunk of an ingest (a table version)"
    )
    ingest_memory_mb: int = Field(
        default=384,
        ge=16,
        description="images in flight during ingest (raw bytes and decoded pixels), in MB",
    )
    candidates: int = Field(default=100, ge=1, le=10_000)
    rrf_k: int = Field(default=60, ge=1)
    fusion: str = Field(default="rrf", description="fusion method: rrf, weighted or dbsf")
    fusion_normalisation: Literal["minmax", "zscore"] = Field(
        default="minmax", description="per-list score normalisation of the weighted fusion"
    )
    ranker: Path | None = Field(
        default=None, description="reranker model folder (mmsearch train-ranker) used by default"
    )
    rules: Path | None = Field(default=None, description="business rules file used by default")
    ann_min_rows: int = Field(
        default=50_000,
        ge=256,
        description="rows from which a vector column gets an ANN index; below, search is exact",
    )
    # ANN defaults of every collection; a collection's ``ann`` (collection.json) and a
    # request override them. At 100k composed MiniLM vectors (IVF-HNSW-SQ), ef 300 with
    # refine x1 gave recall@10 0.986 against exact search at 1.05x the p50 of the
    # engine's own ef (0.976), and refine x4 0.988 at 1.35x (docs/BENCHMARKS.md).
    ann_index_type: AnnIndexType = Field(
        default="ivf_hnsw_sq", description="vector index built from ann_min_rows rows"
    )
    ann_nprobes: int = Field(default=20, ge=1, le=4096, description="IVF partitions searched")
    ann_refine_factor: int = Field(
        default=1, ge=1, le=100, description="re-score k x this many index candidates exactly"
    )
    ann_ef: int | None = Field(
        default=300, ge=1, le=100_000, description="HNSW search list size (None: the engine's)"
    )
    # Searches from memory (index/hot: HNSW or exact vectors, BM25, filter masks), rebuilt
    # from the store; a collection's ``ann.hot`` (``mmsearch ann --hot``) overrides it.
    hot_index: bool = Field(
        default=False, description="answer searches from the in-memory hot index by default"
    )
    max_image_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    # 1600 is what OCR reads at (it shrinks larger images to 1600 px itself), so
    # bounding the decode there keeps all the detail OCR uses; the visual descriptor (64 px),
    # pHash (32 px) and CLIP (224 px) need far less. A 36-megapixel JPEG then holds
    # about 7 MB instead of 140 MB; at 1024 px it would be decoded at the same 1/4 scale,
    # so a lower default would save little time.
    ingest_image_max_side: int = Field(
        default=1600,
        ge=64,
        description="longest side, in pixels, that ingest decodes images to (aspect kept)",
    )
    image_roots: list[Path] = Field(
        default_factory=list,
        description="extra folders local image paths may resolve into (JSON list in the env)",
    )
    allow_private_urls: bool = Field(
        default=False,
        description="allow image URLs on private, loopback and link-local addresses",
    )
    url_allowed_networks: list[str] = Field(
        default_factory=list,
        description="CIDR networks image URLs may use even when private addresses are refused",
    )
    refetch_image_urls: bool = Field(
        default=False, description="revalidate cached image URLs instead of reusing them"
    )
    fetch_connect_timeout_s: float = Field(default=5.0, gt=0)
    fetch_read_timeout_s: float = Field(default=10.0, gt=0)
    fetch_total_timeout_s: float = Field(default=30.0, gt=0)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    ocr: bool = Field(default=False, description="read text in images into image_text")
    # PDFs are untrusted input like images: bounded in bytes, pages and rendered pixels.
    pdf_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="largest PDF an ingest opens, in bytes"
    )
    pdf_max_pages: int = Field(
        default=2000, ge=1, description="pages a PDF may have (a longer one is one row error)"
    )
    pdf_page_max_side: int = Field(
        default=1024, ge=64, description="longest side, in pixels, of a page's stored image"
    )
    pdf_max_page_pixels: int = Field(
        default=4_000_000,
        ge=4096,
        description="pixels one page render may hold (stored image or OCR render)",
    )
    dupe_max_distance: int = Field(
        default=8, ge=0, le=32, description="pHash Hamming distance that counts as near-duplicate"
    )
    dupe_min_cosine: float = Field(
        default=0.9, ge=-1.0, le=1.0, description="image-vector cosine that confirms a pHash match"
    )
    # Serving (mmsearch serve): caches, bounds and observability.
    query_cache_size: int = Field(
        default=1024, ge=0, description="query embeddings kept in the LRU cache; 0 turns it off"
    )
    max_upload_bytes: int = Field(
        default=16 * 1024 * 1024, ge=1, description="largest request body the API accepts"
    )
    allowed_roots: list[Path] = Field(
        default_factory=list,
        description="server folders the API may read catalogs and images from (besides home)",
    )
    tracing: str = Field(default="off", description="OpenTelemetry exporter: off, console, otlp")
    query_log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    query_log_backups: int = Field(default=5, ge=0)
    # Access control (mmsearch serve): who may call, from where, how often.
    auth: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="API keys: on, off, or auto (on once any key exists); serve decides by bind",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values the service answers (loopback names when empty; '*' any)",
    )
    warm_on_start: bool = Field(
        default=False,
        description="load every collection's models in the background as the service "
        "starts (mmsearch serve turns it on), so the first search does not wait for them",
    )
    server_id: str | None = Field(
        default=None,
        max_length=64,
        description="set by serve: the id its <home>/server.json names, sent back by /healthz "
        "so that mmsearch search knows the server it found is the one that wrote the file",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to send writes besides the service's own origin",
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="origins granted CORS (off when empty)"
    )
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="requests per minute per key (or client); 0 = no limit"
    )
    rate_limit_burst: int = Field(default=60, ge=1, description="requests allowed in a burst")
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="worker processes serving this workspace (set by `serve --workers`); "
        "above 1, request budgets live in shared files so the limit holds across workers",
    )
    auth_failures_per_minute: int = Field(
        default=20, ge=1, description="failed logins per minute per client before 429"
    )
    session_hours: float = Field(default=12.0, gt=0, description="web UI login lifetime")
    # Store: LanceDB in the workspace (default) or a Milvus server / cluster (new builds).
    # A name from the store registry (index/stores.py: lancedb, milvus); checked there,
    # so a new store is added without touching the settings.
    backend: str = Field(
        default="lancedb",
        pattern=r"^[a-z][a-z0-9_]{0,31}$",
        description="store of new builds (lancedb, milvus); existing builds keep theirs",
    )
    milvus_uri: str = Field(
        default="http://127.0.0.1:19530", description="Milvus server or cluster address"
    )
    milvus_token: SecretStr | None = Field(
        default=None, description="Milvus token (user:password or API key); never logged"
    )
    milvus_token_file: Path | None = Field(
        default=None, description="file holding the Milvus token (used when no token is set)"
    )
    milvus_index: Literal["hnsw", "ivf_flat", "ivf_sq8", "ivf_pq", "flat"] = Field(
        default="hnsw", description="Milvus index of dense vector fields (flat: exact search)"
    )
    milvus_index_params: dict[str, int | float | str] = Field(
        default_factory=dict, description="build parameters of that index (M, nlist, m, ...)"
    )
    milvus_search_params: dict[str, int | float | str] = Field(
        default_factory=dict, description="search parameters of that index (ef, nprobe, ...)"
    )
    milvus_tenant_partitions: int = Field(
        default=16,
        ge=0,
        le=4096,
        description="partition-key buckets of new Milvus builds for per-tenant (one-group) "
        "ACLs; 0: no partition key",
    )
    milvus_image_layout: Literal["auto", "rows", "struct"] = Field(
        default="auto",
        description="images of new Milvus builds: an Array-of-Structs field (Milvus >= 2.6.4; "
        "auto picks it there) or one row per image grouped by item",
    )
    milvus_exact_filter_rows: int = Field(
        default=4096,
        ge=0,
        le=1_000_000,
        description="a filtered Milvus vector search that matches at most this many items "
        "is answered exactly, and a wider one searches the graph deeper in proportion to "
        "what the filter removes; 0: the index alone",
    )
    milvus_flush: Literal["run", "server"] = Field(
        default="run",
        description="run: flush each ingest's and rebuild's rows and wait for their index "
        "before publishing; server: leave sealing to the server's auto-flush (clusters)",
    )
    milvus_index_wait_s: float = Field(
        default=600.0,
        ge=0,
        description="how long a run waits (after its flush) for Milvus to index what it "
        "wrote; past it the build is published with a warning, its newest rows searched "
        "by brute force until indexed",
    )
    default_access: Literal["public", "private"] = Field(
        default="public",
        description="who sees items without an acl in collections that do not say otherwise",
    )


def home_origin(home: Path | None, settings: Settings | None = None) -> tuple[Path, str]:
    """The workspace a command uses and why (``--home``, ``$MMSEARCH_HOME``, a legacy
    ``./mmsearch-data`` in the current folder, or the per-user default), so that commands
    can say where they looked instead of leaving the user to guess.

    Precedence: ``--home`` > ``$MMSEARCH_HOME`` > ``./mmsearch-data`` when it exists
    (existing users keep their data) > the per-user data folder.
    """
    if home is not None:
        return home, "--home"
    settings = settings if settings is not None else Settings()
    if "home" in settings.model_fields_set:
        return settings.home, "$MMSEARCH_HOME"
    if LEGACY_HOME.is_dir():
        # absolute, so a command the user copies from the output works from any folder
        return LEGACY_HOME.resolve(), "./mmsearch-data in the current folder"
    return settings.home, "per-user default"


def load_settings(home: Path | None = None) -> Settings:
    """Settings for a CLI command; ``home`` is its ``--home`` option.

    A legacy ``./mmsearch-data`` picked up from the current folder is named on stderr,
    since it wins over the per-user folder only because of where the command ran.
    """
    settings = Settings()
    path, origin = home_origin(home, settings)
    if origin == "./mmsearch-data in the current folder":
        print(
            f"note: using the workspace {path} found in the current folder "
            f"(the default is now {default_home()}; pass --home or set MMSEARCH_HOME "
            "to choose)",
            file=sys.stderr,
        )
    if path != settings.home:
        settings = settings.model_copy(update={"home": path})
    return settings
