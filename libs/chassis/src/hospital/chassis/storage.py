"""Object storage through the minio SDK: any S3 endpoint (SeaweedFS locally, MinIO in production)."""

from __future__ import annotations

import asyncio
import io
import os
from dataclasses import dataclass

from minio import Minio
from minio.error import S3Error

from hospital.chassis.settings import ServiceSettings


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    etag: str
    size: int


class ObjectStore:
    """A thin async wrapper (the SDK is blocking: calls run in worker threads)."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        retries: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """``retries``/``timeout`` bound how long a call insists when storage is down (the SDK's default
        retries make an outage take ~10 s to surface); None keeps the SDK defaults."""
        http_client = None
        if retries is not None or timeout is not None:
            import urllib3

            http_client = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=timeout or 5, read=timeout or 60),
                maxsize=32,
                retries=urllib3.Retry(
                    total=retries if retries is not None else 3,
                    backoff_factor=0.2,
                    status_forcelist=[500, 502, 503, 504],
                ),
            )
        self.client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http_client,
        )

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ObjectStore:
        return cls(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )

    async def ensure_bucket(self, bucket: str) -> None:
        def _ensure() -> None:
            if not self.client.bucket_exists(bucket):
                try:
                    self.client.make_bucket(bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        await asyncio.to_thread(_ensure)

    async def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> StoredObject:
        res = await asyncio.to_thread(
            self.client.put_object,
            bucket,
            key,
            io.BytesIO(data),
            len(data),
            content_type=content_type,
            metadata=metadata,
        )
        return StoredObject(bucket, key, res.etag, len(data))

    async def put_file(
        self, bucket: str, key: str, path: str, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        size = os.path.getsize(path)
        res = await asyncio.to_thread(self.client.fput_object, bucket, key, path, content_type=content_type)
        return StoredObject(bucket, key, res.etag, size)

    def read_bytes(self, bucket: str, key: str) -> bytes:
        """The object's bytes, blocking: for code already on a worker thread (DICOM association threads,
        prefetch pools); async code uses :meth:`get_bytes`."""
        resp = self.client.get_object(bucket, key)
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    async def get_bytes(self, bucket: str, key: str) -> bytes:
        return await asyncio.to_thread(self.read_bytes, bucket, key)

    async def exists(self, bucket: str, key: str) -> bool:
        try:
            await asyncio.to_thread(self.client.stat_object, bucket, key)
            return True
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return False
            raise

    async def delete(self, bucket: str, key: str) -> None:
        await asyncio.to_thread(self.client.remove_object, bucket, key)

    async def ping(self) -> None:
        await asyncio.to_thread(self.client.list_buckets)
