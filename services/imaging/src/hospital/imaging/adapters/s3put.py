"""One S3 PUT of bytes already in memory, with a payload hash the caller already computed.

The minio SDK's ``put_object`` over plain HTTP hashes every payload itself (SigV4 ``x-amz-content-sha256``)
and offers no way to pass a hash in; the ingest pipeline has just computed the same SHA-256 of the same
bytes (it is the instance's digest). So the pipeline's uploads are signed by the SDK's own SigV4 signer
(``minio.signer.sign_v4_s3``) with that digest and sent on a kept-alive ``http.client`` connection per
thread: one hash per file instead of two, and none of the SDK's per-call overhead (file re-open, part
reader, header building). The payload stays signed exactly as the SDK would sign it: MinIO recomputes
the hash and refuses a body that does not match (``XAmzContentSHA256Mismatch``); SeaweedFS (the local
stack) does not check it, with the SDK's uploads either. Everything else (GET, HEAD, copy, buckets)
stays on the SDK client.

Path-style requests (``/<bucket>/<key>``), as the SDK sends to SeaweedFS and MinIO.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from urllib.parse import quote, urlsplit

from minio import time as s3time
from minio.credentials import Credentials
from minio.signer import sign_v4_s3


class PutError(RuntimeError):
    """The object store refused or failed a PUT (status and S3 error text)."""


class SignedPut:
    """Thread-safe: each thread keeps its own connection."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        timeout: float = 60.0,
    ) -> None:
        self.endpoint, self.secure, self.region, self.timeout = endpoint, secure, region, timeout
        self._credentials = Credentials(access_key, secret_key)
        self._local = threading.local()
        self._scheme = "https" if secure else "http"

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.secure:
                conn = http.client.HTTPSConnection(
                    self.endpoint, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                conn = http.client.HTTPConnection(self.endpoint, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes | memoryview,
        sha256_hex: str,
        content_type: str = "application/octet-stream",
    ) -> str:
        """PUT `data` (whose SHA-256 is `sha256_hex`) to ``bucket/key``; returns the ETag."""
        path = f"/{quote(bucket, safe='')}/{quote(key, safe='/')}"
        date = s3time.utcnow()
        headers = {
            "Host": self.endpoint,
            "Content-Type": content_type,
            "Content-Length": str(len(data)),
            "x-amz-content-sha256": sha256_hex,
            "x-amz-date": s3time.to_amz_date(date),
        }
        headers = sign_v4_s3(
            method="PUT",
            url=urlsplit(f"{self._scheme}://{self.endpoint}{path}"),
            region=self.region,
            headers=headers,
            credentials=self._credentials,
            content_sha256=sha256_hex,
            date=date,
        )
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more on a new one
            conn = self._connection()
            try:
                conn.request("PUT", path, body=data, headers=headers)
                response = conn.getresponse()
                body = response.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError, OSError):
                self._drop()
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                if response.getheader("Connection", "").lower() == "close":
                    self._drop()
                raise PutError(f"PUT {bucket}/{key}: HTTP {response.status}: {body[:300]!r}")
            if response.getheader("Connection", "").lower() == "close":
                self._drop()
            return (response.getheader("ETag") or "").strip('"')
        raise AssertionError("unreachable")
