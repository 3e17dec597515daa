"""Test support: real servers (nats-server, SeaweedFS S3, PostgreSQL) started on free loopback ports."""
