"""Alembic revisions of the imaging database (frozen history; see hospital.chassis.migrations)."""

# Indexes the revisions create that the table definitions do not describe (PostgreSQL only): the
# byte-order name-prefix indexes behind C-FIND and QIDO (0002).
DATABASE_ONLY_INDEXES = ("ix_studies_name_prefix", "ix_img_patients_name_prefix")
