"""The policy: pure functions of what was observed and what is remembered. No I/O,
no clock, no asyncio, no SQLAlchemy (checked by import-linter, see pyproject)."""
