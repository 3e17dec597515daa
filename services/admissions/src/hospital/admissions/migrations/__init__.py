"""Alembic revisions of the admissions database (frozen history; see hospital.chassis.migrations)."""

# Indexes the revisions create that the table definitions do not describe (PostgreSQL only): the
# trigram index behind fuzzy name search (0001).
DATABASE_ONLY_INDEXES = ("ix_patients_name_trgm",)
