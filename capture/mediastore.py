"""Object storage for referenced audio: S3 and everything that speaks its API (MinIO, Ceph RGW, GCS).

When a bucket is configured, each recording goes by reference: it is staged locally (the
SHA-512 for ``content_hash`` computed on the way), uploaded to a deterministic key,
``{prefix}{yyyy}/{mm}/{dd}/{vcon uuid}/{file}`` (the call's start date, UTC), checked with a
``HEAD`` (the size must match), and referenced by an https URL: under a public base URL, or
presigned for ``presign_s`` seconds. It fails closed: until the object is confirmed there,
the call is not spooled (the pipeline retries with backoff; its state stays on disk, so a
restart uploads again to the same key: re-uploads are idempotent).

boto3 does the talking (an optional dependency: ``pip install vcon-capture[s3]``); each worker
process makes its client once. Credentials: the configured key files, else boto3's standard
chain (environment, shared config, instance role).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from capture.errors import TransientMediaError
from capture.vcon.content import b64url

MULTIPART_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class S3Config:
    bucket: str
    endpoint: str | None = None
    "https://... of an S3-compatible server; None: AWS."
    region: str | None = None
    prefix: str = ""
    access_key: str | None = None
    secret_key: str | None = None
    sse: str | None = None
    "Server-side encryption: AES256 or aws:kms."
    kms_key_id: str | None = None
    public_base_url: str | None = None
    "https URL the bucket's objects are served under; None: presigned URLs."
    presign_s: int = 7 * 24 * 3600
    ca_file: str | None = None

    def __repr__(self) -> str:  # secrets never reach a log line
        return f"S3Config(bucket={self.bucket!r}, endpoint={self.endpoint!r}, prefix={self.prefix!r})"

    def key(self, vcon_uuid: str, started: datetime, filename: str) -> str:
        return f"{self.prefix}{started:%Y/%m/%d}/{vcon_uuid}/{filename}"


@functools.cache
def _client(config: S3Config) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # checked at start too; a worker must not die of it
        raise TransientMediaError(f"boto3 is not installed (pip install vcon-capture[s3]): {exc}") from None
    return boto3.client(
        "s3",
        endpoint_url=config.endpoint,
        region_name=config.region,
        aws_access_key_id=config.access_key,
        aws_secret_access_key=config.secret_key,
        verify=config.ca_file if config.ca_file else True,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, signature_version="s3v4"),
    )


def stage(path: Path, chunks: Iterator[bytes]) -> tuple[int, str]:
    """Write the chunks to ``path`` (fsynced); (size, content_hash)."""
    digest, size = hashlib.sha512(), 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        for data in chunks:
            digest.update(data)
            size += len(data)
            f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return size, "sha512-" + b64url(digest.digest())


def upload(config: S3Config, staged: Path, key: str, size: int, content_hash: str, mediatype: str) -> str:
    """Put the staged file at ``key``, confirm it, and return its https URL. TransientMediaError on any failure."""
    try:
        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise TransientMediaError(f"boto3 is not installed (pip install vcon-capture[s3]): {exc}") from None
    client = _client(config)
    extra: dict[str, Any] = {"ContentType": mediatype, "Metadata": {"content-hash": content_hash}}
    if config.sse:
        extra["ServerSideEncryption"] = config.sse
        if config.kms_key_id:
            extra["SSEKMSKeyId"] = config.kms_key_id
    transfer = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
    try:
        client.upload_file(str(staged), config.bucket, key, ExtraArgs=extra, Config=transfer)
        head = client.head_object(Bucket=config.bucket, Key=key)
        if int(head["ContentLength"]) != size:
            raise TransientMediaError(f"s3://{config.bucket}/{key} holds {head['ContentLength']} bytes, not {size}")
        if config.public_base_url:
            return f"{config.public_base_url.rstrip('/')}/{key}"
        url: str = client.generate_presigned_url(
            "get_object", Params={"Bucket": config.bucket, "Key": key}, ExpiresIn=config.presign_s
        )
        return url
    except (BotoCoreError, ClientError, OSError) as exc:
        raise TransientMediaError(f"upload to s3://{config.bucket}/{key} failed: {exc}") from None
