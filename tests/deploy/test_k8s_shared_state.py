"""State that two processes share, as each kustomize overlay deploys them.

* Every directory one process writes and another reads must be the same volume in both, and a volume
  that holds acknowledged data (the imaging spool: a modality deletes its copy once answered) must be
  persistent, with one writer. Which process modes write and read the spool is taken from the service's
  own wiring (its Components: listeners run in ``serve``; workers in ``worker``, and in ``serve`` unless
  RUN_WORKER_IN_SERVE=false), so moving the pipeline without moving its disk fails here.
* JetStream streams are replicated as many times as the NATS cluster has servers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
KUBECTL = Path(sys.executable).parent / "kubectl"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    assert KUBECTL.exists(), "kubectl missing from the dev environment (uv sync installs it)"
    out = {}
    for overlay in OVERLAYS:
        res = subprocess.run(
            [str(KUBECTL), "kustomize", str(K8S / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert res.returncode == 0, res.stderr
        out[overlay] = [d for d in yaml.safe_load_all(res.stdout) if d]
    return out


def _env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]].get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def _app_workloads(docs: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["kind"] in WORKLOADS
        and d["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name") == service
        and d["spec"]["template"]["metadata"].get("labels", {}).get("tier") == "app"
    ]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == "app")


def _imaging_spool_modes(tmp_path: Path) -> tuple[set[str], dict[str, str]]:
    """(modes writing the spool, {task: where it runs}) from the imaging service's own wiring."""
    from hospital.imaging.config import ImagingSettings
    from hospital.imaging.service import DEFINITION

    rt = SimpleNamespace(settings=ImagingSettings(data_dir=tmp_path), identity=None)
    comps = DEFINITION.build(rt)
    services = rt.imaging

    def where(task: Any) -> str:
        owner = getattr(task, "__self__", None)
        if any(getattr(t, "__self__", None) is owner for t in comps.listeners):
            return "listener"
        assert any(getattr(t, "__self__", None) is owner for t in comps.workers), task
        return "worker"

    # The DICOM receivers and STOW-RS (HTTP, served by `serve`) write it; the ingest pipeline reads it.
    assert where(services.dicom.run) == "listener"
    return {"serve"}, {"pipeline": where(services.pipeline.run)}


def _runs(workload: dict[str, Any], docs: list[dict[str, Any]], placement: str, prefix: str) -> bool:
    """Does this workload run a task placed as `placement` (listener / worker)?"""
    args = _container(workload).get("args", [])
    mode = args[0] if args else ""
    if placement == "listener":
        return mode == "serve"
    in_serve = str(
        _env(_container(workload), docs).get(
            prefix + "RUN_WORKER_IN_SERVE",
            _env(_container(workload), docs).get("HOSPITAL_RUN_WORKER_IN_SERVE", "true"),
        )
    ).lower()
    return mode == "worker" or (mode == "serve" and in_serve != "false")


def _volume_of(workload: dict[str, Any], directory: PurePosixPath) -> tuple[tuple[str, ...], dict[str, Any]]:
    """(identity of the volume holding `directory` in this workload's app container, its definition)."""
    spec = workload["spec"]["template"]["spec"]
    mounts = sorted(
        _container(workload).get("volumeMounts", []), key=lambda m: len(m["mountPath"]), reverse=True
    )
    mount = next(
        (
            m
            for m in mounts
            if directory == PurePosixPath(m["mountPath"])
            or PurePosixPath(m["mountPath"]) in directory.parents
        ),
        None,
    )
    assert mount is not None, f"{workload['metadata']['name']}: {directory} is on no volume (read-only root)"
    name = mount["name"]
    templates = {t["metadata"]["name"]: t for t in workload["spec"].get("volumeClaimTemplates", [])}
    if name in templates:  # a PersistentVolume of each pod's own
        return ("claim-template", workload["metadata"]["name"], name), {
            "persistentVolumeClaim": templates[name]
        }
    volume = next(v for v in spec.get("volumes", []) if v["name"] == name)
    if "persistentVolumeClaim" in volume:
        return ("claim", volume["persistentVolumeClaim"]["claimName"]), volume
    return ("pod-local", workload["metadata"]["name"], name), volume


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_imaging_spool_is_one_persistent_volume_shared_by_its_writer_and_reader(
    rendered, overlay: str, tmp_path: Path
) -> None:
    docs = rendered[overlay]
    writer_modes, placement = _imaging_spool_modes(tmp_path)
    prefix = "HOSPITAL_IMAGING_"
    workloads = _app_workloads(docs, "imaging")
    writers = [w for w in workloads if (_container(w).get("args") or [""])[0] in writer_modes]
    readers = [w for w in workloads if _runs(w, docs, placement["pipeline"], prefix)]
    assert writers, f"{overlay}: nothing receives images"
    assert readers, f"{overlay}: no workload runs the ingest pipeline: received images never reach S3"

    def spool_dir(w: dict[str, Any]) -> PurePosixPath:
        env = _env(_container(w), docs)
        if env.get(prefix + "SPOOL_DIR"):
            return PurePosixPath(env[prefix + "SPOOL_DIR"])
        return PurePosixPath(env.get(prefix + "DATA_DIR") or env["HOSPITAL_DATA_DIR"]) / "imaging-spool"

    volumes = {w["metadata"]["name"]: _volume_of(w, spool_dir(w)) for w in [*writers, *readers]}
    for reader in readers:
        for writer in writers:
            assert spool_dir(reader) == spool_dir(writer), f"{overlay}: spool paths differ"
            written, read = volumes[writer["metadata"]["name"]][0], volumes[reader["metadata"]["name"]][0]
            assert read == written, (
                f"{overlay}: {writer['metadata']['name']} writes the spool on {written}"
                f" but {reader['metadata']['name']} reads it from {read}"
            )
    for name, (identity, definition) in volumes.items():
        # Acknowledged images live there until uploaded: they must outlive the pod.
        assert "persistentVolumeClaim" in definition, (
            f"{overlay}: {name}'s spool is {definition} (not persistent)"
        )
        if identity[0] == "claim":
            # A claim shared by name is one volume for every replica: only one pod may write it.
            writer = next(w for w in writers if w["metadata"]["name"] == name)
            assert writer["spec"].get("replicas", 1) == 1, f"{overlay}: {name}: replicas share one spool"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stream_replicas_match_the_nats_cluster(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    nats = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats")
    servers = nats["spec"].get("replicas", 1)
    app = [
        d
        for d in docs
        if d["kind"] in WORKLOADS and d["spec"]["template"]["metadata"].get("labels", {}).get("tier") == "app"
    ]
    assert app
    for w in app:
        service = w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
        env = _env(_container(w), docs)
        replicas = env.get(
            f"HOSPITAL_{service.upper()}_NATS_STREAM_REPLICAS", env.get("HOSPITAL_NATS_STREAM_REPLICAS", "1")
        )
        assert int(replicas) == servers, (
            f"{overlay}: {w['metadata']['name']} creates streams with {replicas} replica(s) on a "
            f"{servers}-server NATS cluster"
        )
