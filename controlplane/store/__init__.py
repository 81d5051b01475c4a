"""Repositories: every SQL statement of the control plane lives here, behind small functions named for
what they do (store/queue.lock_tenant, store/run_end.record_end, store/runs.move, ...).

Why: a query can be found, indexed and reviewed in one place, and the services above read as the rules they
are (tests/test_architecture.py keeps query-building SQLAlchemy out of every layer above)."""
