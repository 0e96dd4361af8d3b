"""One router per domain: search, collections and items, ingest jobs, feedback, health, UI."""
