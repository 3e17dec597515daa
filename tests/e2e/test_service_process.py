"""The service as operators run it: `python -m hospital.admissions migrate|serve|worker|audit-verify|
deadletters` in real processes, graceful shutdown on SIGTERM, probes on the worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from hospital.chassis.security import DevIssuer
from hospital.testing.servers import free_port


def cli(env: dict[str, str], *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hospital.admissions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    for _ in range(300):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("not ready")


def test_migrate_serve_worker_and_graceful_shutdown(nats_server, tmp_path) -> None:
    env = dict(
        os.environ,
        HOSPITAL_DATA_DIR=str(tmp_path),
        HOSPITAL_NATS_URL=nats_server.url,
        HOSPITAL_ADMISSIONS_HTTP_PORT=str(free_port()),
        HOSPITAL_ADMISSIONS_GRPC_PORT=str(free_port()),
        HOSPITAL_LOG_FORMAT="json",
    )
    assert cli(env, "migrate").returncode == 0
    port = int(env["HOSPITAL_ADMISSIONS_HTTP_PORT"])
    serve = subprocess.Popen(
        [sys.executable, "-m", "hospital.admissions", "serve"], env=env, stderr=subprocess.PIPE, text=True
    )
    wait_ready(port, serve)
    token = DevIssuer(tmp_path / "auth", "https://auth.hospital.local/dev", "hospital").mint_for_role(
        "receptionist"
    )
    r = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/patients",
        headers={"Authorization": f"Bearer {token}"},
        json={"full_name": "Triệu Thị Xuân", "birth_date": "1977", "sex": "female"},
    )
    assert r.status_code == 201
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(30) == 0
    logs = [json.loads(line) for line in serve.stderr.read().splitlines() if line.startswith("{")]
    assert any(rec["message"] == "admissions stopped" for rec in logs)

    verify = cli(env, "audit-verify")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True

    worker_port = free_port()
    wenv = dict(env, HOSPITAL_ADMISSIONS_HTTP_PORT=str(worker_port))
    worker = subprocess.Popen(
        [sys.executable, "-m", "hospital.admissions", "worker"], env=wenv, stderr=subprocess.PIPE, text=True
    )
    wait_ready(worker_port, worker)
    assert httpx.get(f"http://127.0.0.1:{worker_port}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"http://127.0.0.1:{worker_port}/api/v1/rooms").status_code == 404  # no API on a worker
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0

    listed = cli(env, "deadletters", "list")
    assert listed.returncode == 0 and listed.stdout == ""
    nothing = cli(env, "deadletters", "replay")
    assert nothing.returncode == 2 and "nothing to replay" in nothing.stderr


def test_serve_with_two_processes_shares_the_port_and_stops_together(nats_server, tmp_path) -> None:
    env = dict(
        os.environ,
        HOSPITAL_DATA_DIR=str(tmp_path),
        HOSPITAL_NATS_URL=nats_server.url,
        HOSPITAL_ADMISSIONS_HTTP_PORT=str(free_port()),
        HOSPITAL_ADMISSIONS_GRPC_PORT=str(free_port()),
    )
    assert cli(env, "migrate").returncode == 0
    port = int(env["HOSPITAL_ADMISSIONS_HTTP_PORT"])
    parent = subprocess.Popen(
        [sys.executable, "-m", "hospital.admissions", "serve", "--processes", "2"],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    wait_ready(port, parent)
    children = [int(p) for p in Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()]
    assert len(children) == 2
    for _ in range(100):  # both children bound the shared port (the kernel spreads new connections)
        listening = subprocess.run(
            ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True
        ).stdout
        if all(f"pid={c}," in listening for c in children):
            break
        time.sleep(0.1)
    assert all(f"pid={c}," in listening for c in children), listening
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(30) == 0
    for child in children:
        assert (
            not os.path.exists(f"/proc/{child}") or Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
        )
