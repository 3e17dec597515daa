"""Alembic revisions of the billing database (frozen history; see hospital.chassis.migrations)."""
