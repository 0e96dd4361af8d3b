"""numpy's BLAS runs on one thread in mmsearch's processes and around its eigendecomposition,
where contended OpenBLAS threads cost 10-40x (mmsearch/blas.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from threadpoolctl import threadpool_info

from mmsearch.blas import BLAS_THREADS_ENV, one_blas_thread

PROBE = (
    "import mmsearch.cli, numpy, os; from threadpoolctl import threadpool_info; "
    "print(os.environ.get('OPENBLAS_NUM_THREADS'), "
    "max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))"
)


def blas_threads() -> list[int]:
    return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]


def test_a_block_runs_on_one_thread_and_the_limit_is_lifted_after() -> None:
    before = blas_threads()
    with one_blas_thread():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def run_probe(**env: str) -> list[str]:
    child = {k: v for k, v in os.environ.items() if k != BLAS_THREADS_ENV} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=child, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def test_the_cli_process_loads_numpy_with_one_blas_thread_unless_the_user_chose() -> None:
    assert run_probe() == ["1", "1"]
    assert run_probe(**{BLAS_THREADS_ENV: "2"})[0] == "2"  # the user's choice is kept
