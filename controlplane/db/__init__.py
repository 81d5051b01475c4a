"""SQLAlchemy tables, the async engine/session factory and Alembic migrations."""
