"""schemathesis against the real server: no server errors, every status documented.

Every check runs except ``positive_data_acceptance``: some bodies are valid by schema
but not by content (an empty image, a rules text without ``version``, a catalog upload
named ``.png``), which no schema can express; those are 4xx by design and listed in
docs/BENCHMARKS.md with the full run (``benchmarks/api_fuzz.py``). The example budget
is small so that CI stays fast, and smaller still in the light test profile (conftest
``MMSEARCH_TEST_PROFILE``); the benchmark runs a larger one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mmsearch.governance.keys import KeyStore
from mmsearch.service.app import create_app
from service_support import ingest_shop, running_server

from conftest import by_profile


def schemathesis_command() -> list[str]:
    found = shutil.which("schemathesis") or str(Path(sys.executable).parent / "schemathesis")
    return [found]


ALL_PHASES = "examples,coverage,fuzzing,stateful"
# The coverage phase (some 1,400 deterministic cases per run) is most of the time: CI's
# full profile runs it for every caller, the light profile for none.
FEWER_PHASES = by_profile(full=ALL_PHASES, light="examples,fuzzing,stateful")


@pytest.mark.parametrize(
    ("role", "collections", "budget", "phases"),
    [
        ("admin", None, by_profile(full=6, light=2), FEWER_PHASES),
        ("admin", ["shop"], by_profile(full=3, light=1), FEWER_PHASES),
        ("reader", None, by_profile(full=3, light=1), FEWER_PHASES),
    ],
    ids=["admin", "admin-limited-to-shop", "reader"],
)
def test_schemathesis_finds_no_server_error_and_no_undocumented_status(
    settings, make_catalog, tmp_path, role, collections, budget, phases
):
    """A full admin reaches every route; a limited admin and a reader are refused many,
    and those refusals must be documented statuses, never server errors, too."""
    ingest_shop(settings, make_catalog())
    secret = KeyStore(settings.home).create(role, collections=collections, name="fuzz")[1]
    settings = settings.model_copy(
        update={"allowed_roots": [tmp_path / "cat"], "rate_limit_per_minute": 0}
    )
    with running_server(create_app(settings)) as base:
        run = subprocess.run(
            [
                *schemathesis_command(), "run", f"{base}/openapi.json",
                "--checks", "all",
                "--exclude-checks", "positive_data_acceptance",
                "--max-examples", str(budget),
                "--phases", phases,
                "--workers", "1",  # hypothesis calls ast.parse: racy across threads in 3.11.7
                "--seed", "7",
                "--header", f"Authorization: Bearer {secret}",
                "--suppress-health-check", "all",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-8000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested is not None and int(tested.group(1)) >= 30, output[-3000:]
