"""Persistence: SQLAlchemy 2 tables, the repository, and Alembic upgrades."""
