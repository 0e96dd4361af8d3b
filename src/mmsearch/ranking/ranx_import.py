"""ranx, with numba's compiler off.

ranx compiles its metrics with numba, and numba compiles them again in every process
(its typed lists cannot be cached on disk): 15 to 30 s of CPU before the first figure
of any ``mmsearch eval``, publish gate, ranker training or test. In plain Python the
same metrics and paired tests over 225 queries x 100 hits take about 2 s, with equal
values, so ranx runs uncompiled.
"""

from __future__ import annotations

import sys
from types import ModuleType


def import_ranx() -> ModuleType:
    """The ranx module, imported with numba's compiler off.

    numba reads the switch when a function is decorated, so it is set before ranx is
    first imported. It holds for the whole process, which has no other numba user."""
    if "ranx" not in sys.modules:
        from numba.core import config

        config.DISABLE_JIT = True  # pyright: ignore[reportAttributeAccessIssue]  (set from env)
    import ranx

    return ranx
