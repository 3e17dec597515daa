"""The operations commands on a real database: `migrate` seals the audit chains with the local key,
`audit-verify --checkpoints FILE` verifies them and appends a MACed checkpoint, and exits 1 naming the
chain when a head was changed without the key."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hospital.admissions", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_seals_and_audit_verify_reports(tmp_path: Path) -> None:
    db = tmp_path / "admissions.db"
    env = {
        **os.environ,
        "HOSPITAL_DATA_DIR": str(tmp_path),
        "HOSPITAL_ADMISSIONS_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
        "HOSPITAL_LOG_FORMAT": "text",
    }
    assert _run(env, "migrate").returncode == 0
    assert (tmp_path / "auth" / "audit.key").exists()  # the local stack's key, created on first use
    checkpoints = tmp_path / "elsewhere" / "admissions-audit.jsonl"
    ok = _run(env, "audit-verify", "--checkpoints", str(checkpoints))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["ok"] is True
    (line,) = checkpoints.read_text().splitlines()
    assert json.loads(line)["service"] == "admissions" and len(json.loads(line)["heads"]) == 16

    with sqlite3.connect(db) as conn:  # someone with the database but not the key
        conn.execute("UPDATE audit_head SET head_mac = NULL WHERE id = 7")
    bad = _run(env, "audit-verify", "--checkpoints", str(checkpoints))
    assert bad.returncode == 1
    report = json.loads(bad.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and report["chain"] == 7 and "head does not verify" in report["reason"]
    assert len(checkpoints.read_text().splitlines()) == 1  # a failed run records no checkpoint
    # and a start does not seal it again: the trail was keyed already
    assert _run(env, "migrate").returncode == 0
    assert _run(env, "audit-verify").returncode == 1
