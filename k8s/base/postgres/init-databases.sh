#!/bin/bash
# Runs once, when the data directory is first initialised (docker-entrypoint-initdb.d).
# For each service in HOSPITAL_DATABASES: a login role and a database it owns, if the role's password
# is in /etc/postgres-credentials/<service>-password (Secret postgres-credentials); otherwise only the
# database, owned by postgres (development). The migration Job needs ownership (it creates tables and
# the pg_trgm extension). Run the same statements by hand for a service added later (docs/deploy.md).
set -euo pipefail
CREDENTIALS_DIR=${CREDENTIALS_DIR:-/etc/postgres-credentials}
for svc in ${HOSPITAL_DATABASES:-admissions emr lab imaging billing}; do
  pwfile="$CREDENTIALS_DIR/$svc-password"
  if [ -s "$pwfile" ]; then
    echo "init-databases: role and database $svc"
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
      --set=svc="$svc" --set=pw="$(cat "$pwfile")" <<'SQL'
CREATE ROLE :"svc" LOGIN PASSWORD :'pw';
CREATE DATABASE :"svc" OWNER :"svc";
REVOKE ALL ON DATABASE :"svc" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"svc" TO :"svc";
SQL
  else
    echo "init-databases: database $svc (owned by postgres: no $pwfile)"
    psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
      --set=svc="$svc" <<'SQL'
CREATE DATABASE :"svc";
SQL
  fi
done
