"""The generated code in libs/contracts must match proto/ (run `make proto` after editing a .proto)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_contracts_are_fresh() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), "--check"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_event_subject_names_its_message() -> None:
    """Each event message documents its subject (``// <domain>.<entity>.<verb>``) in the proto."""
    for proto in ROOT.glob("proto/hospital/*/v1/events.proto"):
        text = proto.read_text()
        domain = proto.parts[-3]
        for block in text.split("\nmessage ")[1:]:
            name = block.split()[0]
            before = text.split(f"\nmessage {name} ")[0].rstrip().splitlines()[-1]
            assert before.startswith(f"// {domain}."), f"{proto.name}: {name} lacks its subject comment"
