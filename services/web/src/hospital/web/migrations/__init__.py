"""Alembic revisions of the web database (users, sessions; frozen history: hospital.chassis.migrations)."""
