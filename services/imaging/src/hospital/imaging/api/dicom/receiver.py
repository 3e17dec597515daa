"""A DICOM receiver process: runs the storage associations handed over by the listener.

    python -m hospital.imaging.api.dicom.receiver <channel fd> <options JSON>

Started by :class:`~hospital.imaging.api.dicom.receivers.ReceiverPool`, never by hand. It has no
database and no object store: C-ECHO, and C-STORE into the spool (fsync'd before success), with the
same checks as in the serve process. Associations run on the lean upper layer (lean.py: one thread
per association, blocking reads) unless the options say ``"engine": "pynetdicom"``. It exits when the
parent's end of the channel closes.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from typing import Any

from pynetdicom import AE, evt
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from hospital.imaging.adapters.spool import Spool
from hospital.imaging.api.dicom.config import DicomConfig
from hospital.imaging.api.dicom.lean import LeanAssociation
from hospital.imaging.api.dicom.receivers import MSG_DONE, MSG_READY, MSG_SOCKET, MSG_STORED
from hospital.imaging.api.dicom.server import build_ae, gateway_handlers
from hospital.imaging.api.dicom.store import StoreHandler

log = logging.getLogger("hospital.imaging.receiver")


class DetachedAssociationServer(ThreadedAssociationServer):
    """An association server with no listening socket: connections are given to :meth:`adopt`."""

    def server_bind(self) -> None:  # no socket of our own
        pass

    def server_activate(self) -> None:
        pass

    def server_close(self) -> None:
        pass

    def fileno(self) -> int:  # pragma: no cover - never polled (serve_forever is not used)
        raise OSError("detached server")

    def adopt(self, sock: socket.socket, address: tuple[str, int]) -> None:
        self.process_request(sock, address)


class Receiver:
    def __init__(self, channel: socket.socket, options: dict[str, Any]) -> None:
        self.channel = channel
        self._send_lock = threading.Lock()
        self.config = DicomConfig(
            ae_title=options["ae_title"],
            host="127.0.0.1",
            port=0,
            strict_ae=options["strict_ae"],
            allowed_aes={k: (v[0], int(v[1])) for k, v in options["allowed_aes"].items()},
            permissions={k: frozenset(v) for k, v in options.get("permissions", {}).items()},
            max_associations=options["max_associations"],
            network_timeout=options["network_timeout"],
            acse_timeout=options["acse_timeout"],
            dimse_timeout=options["dimse_timeout"],
        )
        self.policy = self.config.policy()
        self.spool = Spool(options["spool"])
        self.lean = options.get("engine", "lean") == "lean"
        self.store = StoreHandler(self.spool, lambda _stored: self._send(MSG_STORED))
        self._threads: set[threading.Thread] = set()
        self._active = 0
        self.ae: AE = build_ae(self.config)
        handlers = [
            *gateway_handlers(self.config, self.spool, lambda _stored: self._send(MSG_STORED)),
            (evt.EVT_CONN_CLOSE, self._closed),
        ]
        self.server = DetachedAssociationServer(
            self.ae,
            ("127.0.0.1", 0),
            self.config.ae_title,
            self.ae.supported_contexts,
            None,
            evt_handlers=handlers,
        )
        self.ae._servers.append(self.server)

    def _send(self, message: bytes) -> None:
        try:
            with self._send_lock:
                self.channel.send(message)
        except OSError:
            pass  # the parent is gone; we exit when the channel reads EOF

    def _closed(self, _event: Event) -> None:
        self._send(MSG_DONE)

    def _admit(self) -> bool:
        with self._send_lock:
            return self._active <= self.config.max_associations

    def _run_lean(self, sock: socket.socket, address: tuple[str, int]) -> None:
        try:
            LeanAssociation(sock, address, self.config, self.store, self._admit, self.policy).run()
        except Exception:
            log.exception("association from %s:%s failed", *address)
        finally:
            with self._send_lock:
                self._active -= 1
                self._threads.discard(threading.current_thread())
            self._send(MSG_DONE)

    def _adopt(self, sock: socket.socket, address: tuple[str, int]) -> None:
        if not self.lean:
            self.server.adopt(sock, address)
            return
        thread = threading.Thread(
            target=self._run_lean, args=(sock, address), name=f"assoc-{address[1]}", daemon=True
        )
        with self._send_lock:
            self._active += 1
            self._threads.add(thread)
        thread.start()

    def run(self) -> None:
        self._send(MSG_READY)
        while True:
            try:
                message, fds, _flags, _addr = socket.recv_fds(self.channel, 4096, 1)
            except OSError:
                break
            if not message and not fds:
                break  # the parent closed the channel
            for fd in fds[1:]:
                socket.close(fd)
            if not message.startswith(MSG_SOCKET) or not fds:
                continue
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(True)
            try:
                host, port = json.loads(message[len(MSG_SOCKET) :])
                self._adopt(sock, (host, int(port)))
            except Exception:
                log.exception("could not start an association on a handed-over connection")
                sock.close()
                self._send(MSG_DONE)
        # Finish the associations in progress (their instances are acknowledged only once spooled).
        for assoc in list(self.server.active_associations):
            assoc.join(self.config.network_timeout)
        with self._send_lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(self.config.network_timeout)


def main(argv: list[str]) -> int:
    channel = socket.socket(fileno=int(argv[0]))
    options = json.loads(argv[1])
    logging.basicConfig(
        level=options.get("log_level", "INFO").upper(),
        format="%(asctime)s %(levelname)s receiver[%(process)d] %(name)s: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    Receiver(channel, options).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
