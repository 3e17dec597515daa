"""Alembic revisions of the lab database (frozen history; see hospital.chassis.migrations)."""
