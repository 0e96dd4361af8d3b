"""Governance: who may do what (roles, API keys), what was done (audit), with what (registry).

The pieces are libraries first: the CLI (``mmsearch keys|audit|rules|rankers``) and the
HTTP service call the same functions, so a key revoked from the command line or a rules
file registered by an admin means the same thing to every process sharing a workspace.
Everything lives under the workspace folder (``<home>/auth``, ``<home>/audit``,
``<home>/registry``) and every write takes a cross-process file lock.
"""

from __future__ import annotations
