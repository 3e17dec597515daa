"""`make bench`: run the benchmarks and write each result to bench-results/<name>.json.

python tests/bench/run.py [name ...]      # default: all
"""

from __future__ import annotations

import importlib
import json
import platform
import sys
import time
from pathlib import Path

from hospital.chassis import aio

ROOT = Path(__file__).resolve().parents[2]
BENCHES = [
    "event_pipeline",
    "admissions",
    "imaging_store",
    "imaging_retrieve",
    "lab_ingest",
    "billing_callbacks",
    "emr_consultation",
    "web_screens",
]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(ROOT))
    names = argv or BENCHES
    out_dir = ROOT / "bench-results"
    out_dir.mkdir(exist_ok=True)
    for name in names:
        module = importlib.import_module(f"tests.bench.{name}")
        print(f"running {name} ...", flush=True)
        started = time.time()
        result = aio.run(module.main())
        result["machine"] = {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        result["ran_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
        result["command"] = f"make bench  (python tests/bench/run.py {name})"
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
        print(json.dumps(result, indent=2, ensure_ascii=False))
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
