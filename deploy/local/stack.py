"""The local stack without containers: ``make up | down | ps | logs | token``.

Starts on loopback, with data under ``var/``: nats-server with JetStream (14222, monitoring 18222),
SeaweedFS S3 (18333), PostgreSQL when ``DB=postgres`` (15432; SQLite files otherwise), then every
service that exists (migrate, then serve) on its default ports, and returns once all are ready.
Environment variables given to ``make up`` reach the services.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from hospital.chassis.audit import ensure_dev_key
from hospital.chassis.security import DEMO_USERS, DevIssuer
from hospital.testing.servers import NatsServer, PostgresServer, S3Server

ROOT = Path(__file__).resolve().parents[2]
VAR = Path(os.environ.get("HOSPITAL_DATA_DIR", ROOT / "var"))
RUN, LOG = VAR / "run", VAR / "log"
ISSUER = "https://auth.hospital.local/dev"
AUDIENCE = "hospital"
S3_KEY, S3_SECRET = "hospital-dev", "hospital-dev-secret"

# Default ports (kiosks, analyzers, modalities and scripts depend on them).
SERVICES = {
    "web": {"http": 8080},
    "admissions": {"http": 8001, "grpc": 50051},
    "emr": {"http": 8002, "grpc": 50052},
    "lab": {"http": 8003, "grpc": 50053, "extra": {"MLLP_PORT": 2575, "ASTM_PORT": 5100}},
    "imaging": {"http": 8004, "grpc": 50054, "extra": {"DICOM_PORT": 11112}},
    "billing": {"http": 8005, "grpc": 50055},
}
INFRA = {"nats": 14222, "nats-monitor": 18222, "s3": 18333, "postgres": 15432}


def existing_services() -> list[str]:
    """Services whose package has a runnable entry point (``python -m hospital.<svc>``)."""
    return [s for s in SERVICES if (ROOT / "services" / s / "src" / "hospital" / s / "__main__.py").exists()]


def pidfile(name: str) -> Path:
    return RUN / f"{name}.pid"


def alive(name: str) -> int | None:
    try:
        pid = int(pidfile(name).read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:  # noqa: BLE001
            time.sleep(0.2)
    return False


def dev_facility_credentials() -> tuple[Path, Path] | None:
    """Billing's development facility key and self-signed certificate (marked as development), created
    like the development token issuer so that a closed insured visit's claim can be signed and exported."""
    if "billing" not in existing_services():
        return None
    from hospital.billing.devcredentials import DevFacilityCredentials

    return DevFacilityCredentials(
        VAR / "billing", os.environ.get("HOSPITAL_BILLING_FACILITY_CODE", "35001")
    ).ensure()


def service_env(name: str, db: str) -> dict[str, str]:
    ports = SERVICES[name]
    p = f"HOSPITAL_{name.upper()}_"
    env = dict(os.environ)
    env.setdefault("HOSPITAL_DATA_DIR", str(VAR))
    env.setdefault("HOSPITAL_NATS_URL", f"nats://127.0.0.1:{INFRA['nats']}")
    env.setdefault("HOSPITAL_S3_ENDPOINT", f"127.0.0.1:{INFRA['s3']}")
    env.setdefault("HOSPITAL_S3_ACCESS_KEY", S3_KEY)
    env.setdefault("HOSPITAL_S3_SECRET_KEY", S3_SECRET)
    env.setdefault(p + "HTTP_PORT", str(ports["http"]))
    if "grpc" in ports:
        env.setdefault(p + "GRPC_PORT", str(ports["grpc"]))
    for key, value in ports.get("extra", {}).items():
        env.setdefault(p + key, str(value))
    if name == "billing" and not (env.get(p + "FACILITY_KEY_FILE") or env.get(p + "FACILITY_CERT_FILE")):
        creds = dev_facility_credentials()
        if creds:
            env[p + "FACILITY_KEY_FILE"], env[p + "FACILITY_CERT_FILE"] = (str(c) for c in creds)
    if db == "postgres":
        env.setdefault(
            p + "DATABASE_URL", f"postgresql+asyncpg://postgres@127.0.0.1:{INFRA['postgres']}/{name}"
        )
    return env


def start_infra(db: str) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    LOG.mkdir(parents=True, exist_ok=True)
    if not alive("nats"):
        print(f"starting nats-server (JetStream) on 127.0.0.1:{INFRA['nats']}")
        n = NatsServer(VAR / "nats", port=INFRA["nats"], monitor_port=INFRA["nats-monitor"]).start()
        pidfile("nats").write_text(str(n.proc.pid))
    if not alive("s3"):
        print(f"starting SeaweedFS S3 on 127.0.0.1:{INFRA['s3']}")
        s3 = S3Server(VAR / "s3", s3_port=INFRA["s3"])
        s3.access_key, s3.secret_key = S3_KEY, S3_SECRET
        s3.start()
        pidfile("s3").write_text(str(s3.proc.pid))
    if db == "postgres" and not alive("postgres"):
        print(f"starting PostgreSQL on 127.0.0.1:{INFRA['postgres']}")
        pg = PostgresServer(VAR / "postgres", port=INFRA["postgres"]).start()
        pid = (VAR / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0]
        pidfile("postgres").write_text(pid)
        import asyncio

        for name in existing_services():
            try:
                asyncio.run(pg.create_database(name))
            except Exception as exc:
                if "already exists" not in str(exc):
                    raise


def up(db: str) -> int:
    DevIssuer(VAR / "auth", ISSUER, AUDIENCE).ensure_keys()
    ensure_dev_key(VAR)  # the audit trail's HMAC key, shared by the stack's services (var/auth/audit.key)
    dev_facility_credentials()
    start_infra(db)
    services = existing_services()
    for name in services:
        if alive(name):
            continue
        env = service_env(name, db)
        mig = subprocess.run(
            [sys.executable, "-m", f"hospital.{name}", "migrate"], env=env, capture_output=True, text=True
        )
        if mig.returncode != 0:
            print(f"{name}: migration failed:\n{mig.stderr[-3000:]}", file=sys.stderr)
            return 1
        if name == "web" and not demo_users(env):
            return 1
        log = open(LOG / f"{name}.log", "ab")  # noqa: SIM115 - the child process keeps it
        proc = subprocess.Popen(
            [sys.executable, "-m", f"hospital.{name}", "serve"],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=ROOT,
        )
        pidfile(name).write_text(str(proc.pid))
    failed = [n for n in services if not wait_http(f"http://127.0.0.1:{SERVICES[n]['http']}/readyz", 60)]
    if failed:
        print(f"not ready: {', '.join(failed)} (see var/log/<service>.log)", file=sys.stderr)
        return 1
    print("\nThe hospital platform is running (make ps, make logs, make down):")
    for name in services:
        ports = SERVICES[name]
        extra = ", ".join(f"{k.lower().replace('_port', '')} {v}" for k, v in ports.get("extra", {}).items())
        grpc = f", gRPC 127.0.0.1:{ports['grpc']}" if "grpc" in ports else ""
        print(f"  {name:<11} http://127.0.0.1:{ports['http']}/docs{grpc}{', ' + extra if extra else ''}")
    print(
        f"  {'nats':<11} nats://127.0.0.1:{INFRA['nats']} (monitoring http://127.0.0.1:{INFRA['nats-monitor']})"
    )
    print(f"  {'s3':<11} http://127.0.0.1:{INFRA['s3']} (key {S3_KEY})")
    if db == "postgres":
        print(f"  {'postgres':<11} postgresql://postgres@127.0.0.1:{INFRA['postgres']}/<service>")
    print("\nCall the APIs with a development token:  make token ROLE=receptionist")
    if "web" in services:
        print(
            "\nSign in at http://127.0.0.1:8080/ as one of the demo users, named after their role "
            f"({', '.join(DEMO_USERS)}),\nwith the password: {demo_password()}"
        )
    return 0


def demo_password() -> str:
    """HOSPITAL_WEB_DEMO_PASSWORD if set, else a random one made on first use and kept in var/auth."""
    given = os.environ.get("HOSPITAL_WEB_DEMO_PASSWORD")
    if given:
        return given
    path = VAR / "auth" / "web-demo-password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(12))
    return path.read_text().strip()


def demo_users(env: dict[str, str]) -> bool:
    """One web user per role, named after the role (receptionist, doctor, ...), with the demo password."""
    run = subprocess.run(
        [sys.executable, "-m", "hospital.web", "demo-users"],
        env={**env, "HOSPITAL_WEB_DEMO_PASSWORD": demo_password()},
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        print(f"web: demo users not created:\n{run.stderr[-3000:]}", file=sys.stderr)
    return run.returncode == 0


def down() -> int:
    order = [*reversed(list(SERVICES)), "postgres", "s3", "nats"]
    for name in order:
        pid = alive(name)
        if pid is None:
            pidfile(name).unlink(missing_ok=True)
            continue
        print(f"stopping {name} ({pid})")
        if name == "postgres":
            pg = PostgresServer(VAR / "postgres", port=INFRA["postgres"])
            pg.started_here = True
            pg.stop()
        else:
            try:
                os.killpg(pid, signal.SIGTERM) if name == "s3" else os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 35
        while time.monotonic() < deadline and alive(name):
            time.sleep(0.2)
        if alive(name):
            os.kill(pid, signal.SIGKILL)
        pidfile(name).unlink(missing_ok=True)
    return 0


def ps() -> int:
    rows = []
    for name in [*INFRA, *existing_services()]:
        if name == "nats-monitor":
            continue
        pid = alive(name)
        port = INFRA.get(name) or SERVICES[name]["http"]
        rows.append(f"{name:<11} {'running' if pid else 'stopped':<8} {pid or '':<8} 127.0.0.1:{port}")
    print("\n".join(rows))
    return 0


def logs(name: str | None, lines: int) -> int:
    files = [LOG / f"{name}.log"] if name else sorted(LOG.glob("*.log"))
    for f in files:
        if f.exists():
            print(f"==> {f.relative_to(ROOT) if f.is_relative_to(ROOT) else f} <==")
            print("\n".join(f.read_text(errors="replace").splitlines()[-lines:]))
    return 0


def token(role: str) -> int:
    if role not in DEMO_USERS:
        print(f"ROLE must be one of: {', '.join(DEMO_USERS)}", file=sys.stderr)
        return 2
    print(DevIssuer(VAR / "auth", ISSUER, AUDIENCE).mint_for_role(role))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("up")
    u.add_argument("--db", choices=["sqlite", "postgres"], default=os.environ.get("DB") or "sqlite")
    sub.add_parser("down")
    sub.add_parser("ps")
    lg = sub.add_parser("logs")
    lg.add_argument("service", nargs="?")
    lg.add_argument("-n", type=int, default=50)
    t = sub.add_parser("token")
    t.add_argument("role")
    sub.add_parser("services").set_defaults()
    a = ap.parse_args()
    if a.cmd == "up":
        return up(a.db)
    if a.cmd == "down":
        return down()
    if a.cmd == "ps":
        return ps()
    if a.cmd == "logs":
        return logs(a.service, a.n)
    if a.cmd == "services":
        print(json.dumps(existing_services()))
        return 0
    return token(a.role)


if __name__ == "__main__":
    sys.exit(main())
