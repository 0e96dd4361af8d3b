"""numpy's BLAS on one thread, in mmsearch's own processes and around its one large product.

mmsearch's numpy work is small matrices: a query against a few thousand candidates, a
384 x 384 covariance. OpenBLAS starts a thread per core for each of them, and on a host
whose cores are busy (encoders, other requests, other jobs) those threads wait on each
other: an eigendecomposition of a 384 x 384 matrix took 0.7-3.1 s with numpy's two
default threads on a loaded 2-core host, and 0.07-0.16 s on one (CPU time 0.26-0.82 s
against 0.03-0.06 s). The encoders keep their own thread pools (torch's OpenMP,
onnxruntime's), which this does not touch.

``prefer_one_blas_thread`` sets ``OPENBLAS_NUM_THREADS=1`` before numpy is first
imported, for the CLI and the workers it starts (the variable is read when the library
loads; one the user set is kept). ``one_blas_thread`` limits an already loaded BLAS for
a block, for code that also runs inside other programs (an ``Ingestor`` in a notebook).
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from typing import Any

BLAS_THREADS_ENV = "OPENBLAS_NUM_THREADS"


def prefer_one_blas_thread() -> None:
    """One BLAS thread for this process and its children, unless the user chose."""
    os.environ.setdefault(BLAS_THREADS_ENV, "1")


def one_blas_thread() -> AbstractContextManager[Any]:
    """numpy's and scipy's BLAS limited to one thread inside a ``with`` block."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
