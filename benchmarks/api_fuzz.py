"""Fuzz the running service against its own OpenAPI document with schemathesis.

Why this exists: every status a route can return must be in ``/openapi.json`` and no
input may produce a server error. schemathesis generates requests from the schema
(valid and invalid), sends them to a real ``mmsearch serve`` on 127.0.0.1 with an
admin key, and applies all of its checks (server errors, undocumented statuses,
content types, response schemas, negative-data rejection, ignored auth, ...).

The workspace holds the bundled emoji sample (real default encoders). Destructive
routes are fuzzed too: item PUT/DELETE and key revocation only ever hit generated
ids, and the collection is thrown away afterwards.

Usage::

    python benchmarks/api_fuzz.py                       # 25 examples per operation
    python benchmarks/api_fuzz.py --max-examples 100 --items 60
    python benchmarks/api_fuzz.py --identity admin-scoped   # admin limited to 'emoji'
    python benchmarks/api_fuzz.py --identity reader         # reader with ACL groups
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from auth_overhead import serve

from mmsearch.config import Settings
from mmsearch.governance.keys import KeyStore
from mmsearch.ingest import IngestOptions, Ingestor
from mmsearch.sample_data import SAMPLE_EMOJI_DIR, sample_catalog_path

# role, collections, ACL groups
IDENTITIES: dict[str, tuple[str, list[str] | None, list[str]]] = {
    "admin": ("admin", None, []),
    "admin-scoped": ("admin", ["emoji"], []),
    "reader": ("reader", None, ["team"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log", type=Path, help="write schemathesis' whole report here")
    parser.add_argument(
        "--identity",
        choices=sorted(IDENTITIES),
        default="admin",
        help="the key the requests carry: refusals must be documented statuses too",
    )
    args = parser.parse_args(argv)
    print(f"identity: {args.identity}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = sample_catalog_path().read_text("utf-8").splitlines()[: args.items]
        catalog = folder / "emoji.jsonl"
        catalog.write_text("\n".join(rows) + "\n", encoding="utf-8")
        home = folder / "home"
        settings = Settings(home=home)
        Ingestor(settings).run(IngestOptions(catalog, "emoji", images_root=SAMPLE_EMOJI_DIR))
        role, collections, groups = IDENTITIES[args.identity]
        secret = KeyStore(home).create(role, collections=collections, groups=groups)[1]
        roots = {"MMSEARCH_ALLOWED_ROOTS": json.dumps([str(folder)])}
        with serve(home, env=roots) as base:
            started = time.perf_counter()
            run = subprocess.run(
                [
                    "schemathesis", "run", f"{base}/openapi.json",
                    "--checks", "all",
                    "--max-examples", str(args.max_examples),
                    "--workers", str(args.workers),
                    "--seed", str(args.seed),
                    "--header", f"Authorization: Bearer {secret}",
                    "--suppress-health-check", "all",
                    "--no-color",
                ],
                capture_output=True,
                text=True,
                timeout=1800,
            )  # fmt: skip
            seconds = time.perf_counter() - started
    output = run.stdout + run.stderr
    if args.log:
        args.log.write_text(output, encoding="utf-8")
    print(output[-6000:])
    summary = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print(f"schemathesis exit code {run.returncode} in {seconds:.0f} s")
    for line in summary[-3:]:
        print(line.strip())
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
