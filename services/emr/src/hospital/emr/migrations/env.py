from alembic import context

from hospital.chassis.migrations import run_env

run_env(context)
