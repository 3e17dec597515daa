#!/usr/bin/env bash
# Set up a fresh machine for the platform: uv, OS packages when missing, the locked Python environment.
# Idempotent and quiet when everything is there already. Used by `make setup` (and so `make up`/`make test`).
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql postgresql-contrib)
command -v runuser >/dev/null 2>&1 || need_apt+=(util-linux)
command -v storescu >/dev/null 2>&1 || need_apt+=(dcmtk)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
command -v Orthanc >/dev/null 2>&1 || need_apt+=(orthanc)   # the PACS peer in imaging benchmarks
# Orthanc's DICOMweb and GDCM (JPEG 2000) plugins: the peer in the read-path benchmark
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need_apt+=(orthanc-dicomweb)
[ -e /usr/share/orthanc/plugins/libOrthancGdcm.so ] || need_apt+=(orthanc-gdcm)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)       # network namespaces for those benchmarks
[ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-dejavu-core)  # the web front end's browser tests
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing OS packages: ${need_apt[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "installing OS packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their own daemons (PostgreSQL on 5432, Orthanc on every interface):
  # the platform starts what it needs on its own ports.
  policy=/usr/sbin/policy-rc.d
  had_policy=0; [ -e "$policy" ] && had_policy=1
  [ "$had_policy" = 1 ] || { printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; }
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  [ "$had_policy" = 1 ] || rm -f "$policy"
fi
# The pg_trgm extension ships in postgresql-contrib on older Debian releases.
if ! ls /usr/share/postgresql/*/extension/pg_trgm.control >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq postgresql-contrib >/dev/null
fi

PY=${PYTHON:-python3}
if ! "$PY" -m uv --version >/dev/null 2>&1; then
  echo "installing uv"
  "$PY" -m pip install -q uv
fi
# Byte-compile once: this environment may set PYTHONDONTWRITEBYTECODE, and every service process,
# receiver and test subprocess would otherwise compile its imports again (~3 s of CPU each).
"$PY" -m uv sync --frozen --quiet --compile-bytecode
.venv/bin/python -m compileall -q -j 0 libs services tests tools deploy >/dev/null
