"""Orthanc (the OS package) as a real third-party DICOM peer for the imaging tests.

Orthanc binds every interface and has no bind option, so it runs in a network namespace of its own
(``ip netns``), joined to the host by a veth pair on a private /30: the host side gets ``.1``, Orthanc's
side ``.2``. Orthanc's DICOM and HTTP ports are therefore reachable from the host (and from the imaging
service under test, which dials it as a C-STORE destination) at that private address only, and never
collide with anything listening on the host.

Clean-up: :meth:`OrthancPeer.stop` terminates Orthanc and deletes the namespace (which removes the veth
pair). If the test process itself is killed, Orthanc gets SIGKILL from the kernel (``setpriv --pdeathsig``),
and the next :meth:`OrthancPeer.start` deletes namespaces left by test processes that no longer exist
(names ``himg-<pid>-<token>``).

Needs root (``ip netns``), like the benchmark; CI runs the tests as root.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

NS_PREFIX = "himg-"
_NS_NAME = re.compile(rf"^{NS_PREFIX}(\d+)-[0-9a-f]+$")


def available() -> str | None:
    """None if Orthanc can run here; else why not."""
    missing = [tool for tool in ("Orthanc", "ip", "setpriv") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (deploy/local/bootstrap.sh installs orthanc)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def sweep_stale_namespaces() -> list[str]:
    """Delete namespaces left behind by test processes that have exited; returns their names."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NS_NAME.match(name)
        if not match or Path(f"/proc/{match.group(1)}").exists():
            continue
        for pid in _ip("netns", "pids", name, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)  # an Orthanc of a test run that died
            except (ProcessLookupError, ValueError):
                pass
        _ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


def _free_subnet() -> str:
    """A 10.213.x.y/30 not already used on the host; returns its first three octets + base."""
    used = _ip("-o", "-4", "addr", check=False).stdout
    for _ in range(100):
        third, fourth = random.randrange(256), random.randrange(0, 256, 4)
        base = f"10.213.{third}."
        if f"inet {base}{fourth + 1}/" not in used and f"inet {base}{fourth + 2}/" not in used:
            return f"{base}{fourth}"
    raise RuntimeError("no free 10.213.0.0/16 subnet for the Orthanc namespace")


class OrthancPeer:
    """One Orthanc server in its own network namespace. ``start()``/``stop()``, or use as a context
    manager."""

    dicom_port = 4242
    http_port = 8042

    def __init__(self, base: Path, ae_title: str = "ORTHANC", config: dict[str, Any] | None = None) -> None:
        self.base = Path(base)
        self.ae_title = ae_title
        self.extra_config = config or {}
        token = secrets.token_hex(3)
        self.namespace = f"{NS_PREFIX}{os.getpid()}-{token}"
        self._host_if, self._peer_if = f"hio{token}h", f"hio{token}o"
        self.host = ""  # Orthanc's address, reachable from the host
        self.host_side = ""  # the host's address on the link, reachable from Orthanc
        self._password = secrets.token_urlsafe(12)
        self.proc: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------------------ life cycle
    def start(self, timeout: float = 30.0) -> Self:
        sweep_stale_namespaces()
        try:
            self._network()
            self._launch()
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        subnet = _free_subnet()
        prefix, last = subnet.rsplit(".", 1)
        host_addr, self.host = f"{prefix}.{int(last) + 1}", f"{prefix}.{int(last) + 2}"
        self.host_side = host_addr
        _ip("netns", "add", self.namespace)
        _ip(
            "link",
            "add",
            self._host_if,
            "type",
            "veth",
            "peer",
            "name",
            self._peer_if,
            "netns",
            self.namespace,
        )
        _ip("addr", "add", f"{host_addr}/30", "dev", self._host_if)
        _ip("link", "set", self._host_if, "up")
        _ip("-n", self.namespace, "addr", "add", f"{self.host}/30", "dev", self._peer_if)
        _ip("-n", self.namespace, "link", "set", self._peer_if, "up")
        _ip("-n", self.namespace, "link", "set", "lo", "up")

    def _launch(self) -> None:
        storage = self.base / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": f"test-{self.namespace}",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "DicomAet": self.ae_title,
            "DicomPort": self.dicom_port,
            "HttpPort": self.http_port,
            # Any calling AE may store (our gateway calls as HOSPITAL_PACS); HTTP only with the password,
            # and only over the private veth link (the namespace has no other interface).
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True,
            "RemoteAccessAllowed": True,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {"test": self._password},
            "Plugins": [],
            "HttpServerEnabled": True,
            "SyncStorageArea": False,
            "StoreMD5ForAttachments": False,
        } | self.extra_config
        path = self.base / "orthanc.json"
        path.write_text(json.dumps(config))
        self.log_path = self.base / "orthanc.log"
        with open(self.log_path, "ab") as log:
            # setpriv and `ip netns exec` exec in place: self.proc is Orthanc, killed by the kernel if
            # the thread that started it (call start() from a long-lived thread) or this process dies.
            self.proc = subprocess.Popen(
                [
                    "setpriv",
                    "--pdeathsig",
                    "KILL",
                    "ip",
                    "netns",
                    "exec",
                    self.namespace,
                    "Orthanc",
                    str(path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                self.get("/system", timeout=1.0)
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Orthanc did not answer within {timeout:.0f}s: {self.log_tail()}"
                    ) from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
        _ip("netns", "del", self.namespace, check=False)  # also removes the veth pair
        _ip("link", "del", self._host_if, check=False)  # in case the namespace was never created

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except (OSError, AttributeError):
            return ""

    # ------------------------------------------------------------------------------ REST API
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def known_ae(self) -> str:
        """This peer as an entry of HOSPITAL_IMAGING_KNOWN_AES."""
        return f"{self.ae_title}={self.host}:{self.dicom_port}"

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> bytes:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        auth = base64.b64encode(f"test:{self._password}".encode()).decode()
        request.add_header("Authorization", f"Basic {auth}")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    def get(self, path: str, timeout: float = 10.0) -> Any:
        return json.loads(self._request("GET", path, timeout=timeout))

    def call(self, method: str, path: str, body: Any, timeout: float = 10.0) -> Any:
        """A REST call with a JSON body (POST, PUT), its JSON answer."""
        answer = self._request(method, path, body, timeout=timeout)
        return json.loads(answer) if answer.strip() else None

    def find_instances(self, study_instance_uid: str) -> list[str]:
        """Orthanc's ids of the instances it holds of one study."""
        return json.loads(
            self._request(
                "POST",
                "/tools/find",
                {"Level": "Instance", "Query": {"StudyInstanceUID": study_instance_uid}},
            )
        )

    def instance_file(self, orthanc_id: str) -> bytes:
        """The Part 10 file Orthanc stored for an instance."""
        return self._request("GET", f"/instances/{orthanc_id}/file")
