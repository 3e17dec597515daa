"""Fetch the web's vendored front-end files again from the npm registry and check them against
services/web/src/hospital/web/static/vendor/VENDOR.json (docs/adr/0600-web-server-rendered-htmx.md).

    python tools/vendor_web.py            # download each pinned package with `npm pack`, compare hashes
    python tools/vendor_web.py --write    # also copy the files into place (after raising a version)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "services" / "web" / "src" / "hospital" / "web" / "static" / "vendor"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--write", action="store_true", help="copy the packages' files into place, print new hashes"
    )
    args = ap.parse_args()
    pins = json.loads((VENDOR / "VENDOR.json").read_text())
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for entry in [*pins["files"], *pins.get("test_files", [])]:
            spec = f"{entry['package']}@{entry['version']}"
            out = subprocess.run(
                ["npm", "pack", spec, "--silent", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                check=True,
            )
            with tarfile.open(Path(tmp) / out.stdout.strip().splitlines()[-1]) as tar:
                member = tar.extractfile(f"package/{entry['path']}")
                assert member is not None
                data = member.read()
            digest = hashlib.sha256(data).hexdigest()
            target = (VENDOR / entry["file"]).resolve()
            if args.write:
                target.write_bytes(data)
                print(f"{spec} {entry['path']} -> {target.relative_to(ROOT)} sha256 {digest}")
            elif digest != entry["sha256"]:
                print(
                    f"{spec}: {entry['path']} has sha256 {digest}, pinned {entry['sha256']}", file=sys.stderr
                )
                bad += 1
            else:
                print(f"{spec}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
