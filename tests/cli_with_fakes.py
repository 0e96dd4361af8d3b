"""The real ``mmsearch`` CLI with the tests' fake encoders registered.

Subprocess tests that must encode (a server answering searches, a search run in its
own process) start this file instead of ``mmsearch``: the fake encoders exist only
where ``conftest`` is imported, and a collection built with them can be searched only
by a process that knows them. Everything else is the CLI as users run it.
"""

from __future__ import annotations

import sys

from mmsearch.cli import app

import conftest  # noqa: F401  (registers fake-text and fake-image)

if __name__ == "__main__":
    sys.exit(app())
