"""The schema (tables.py, dialect_tables.py, base.py), the async engine and session factory
(session.py) and the Alembic migrations that create it.

Why apart from store/: tables say what is kept, store/ says how it is read and written; migrations depend
on the first only."""
