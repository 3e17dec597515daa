"""Object storage through the minio SDK against a real S3 server (SeaweedFS)."""

import time

import pytest

from hospital.chassis.storage import ObjectStore


@pytest.fixture
def store(s3_server) -> ObjectStore:
    return ObjectStore(s3_server.endpoint, s3_server.access_key, s3_server.secret_key, retries=1, timeout=5)


async def test_put_get_exists_delete(store: ObjectStore, tmp_path) -> None:
    await store.ensure_bucket("chassis-test")
    await store.ensure_bucket("chassis-test")  # idempotent
    data = "Kết quả xét nghiệm của Nguyễn Thị Hoa".encode() * 1000
    stored = await store.put_bytes("chassis-test", "a/b/c.bin", data, metadata={"patient": "p1"})
    assert stored.size == len(data)
    assert await store.get_bytes("chassis-test", "a/b/c.bin") == data
    path = tmp_path / "f.bin"
    path.write_bytes(b"\x00\x01" * 5000)
    assert (await store.put_file("chassis-test", "f.bin", str(path))).size == 10000
    assert await store.exists("chassis-test", "f.bin")
    await store.delete("chassis-test", "f.bin")
    assert not await store.exists("chassis-test", "f.bin")
    await store.ping()


async def test_unreachable_storage_fails_fast() -> None:
    import urllib3

    from hospital.testing.servers import free_port

    dead = ObjectStore(f"127.0.0.1:{free_port()}", "k", "s", retries=0, timeout=1)
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.MaxRetryError, match="Connection refused"):
        await dead.put_bytes("chassis-test", "k", b"x")
    assert time.monotonic() - started < 5
