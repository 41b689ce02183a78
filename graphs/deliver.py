"""Delivering a rendered report: to a folder (the default) or S3-compatible storage.

The report is rendered into a staging folder first, so that a destination that cannot
be written (a read-only folder, a bucket that refuses the upload) loses nothing: the
error names the staging folder where the files are.
"""

from __future__ import annotations

import mimetypes
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harmonygraph.concurrency import run_in_thread

__all__ = [
    "DeliveryError",
    "Destination",
    "FolderDestination",
    "S3Destination",
    "deliver",
    "parse_destination",
]


class DeliveryError(RuntimeError):
    """The report could not be delivered; `staged_dir` still holds every file."""

    def __init__(self, message: str, staged_dir: Path) -> None:
        super().__init__(message)
        self.staged_dir = staged_dir


@dataclass(frozen=True)
class FolderDestination:
    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class S3Destination:
    """A bucket and key prefix; `endpoint_url` for MinIO, Ceph, R2 and other S3-compatibles.

    Credentials come from boto3's usual chain (environment, profile, instance role).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region_name: str | None = None

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix.strip('/')}".rstrip("/")


Destination = FolderDestination | S3Destination


def parse_destination(text: str, *, endpoint_url: str | None = None) -> Destination:
    """`s3://bucket/prefix` or a folder path."""
    if text.startswith("s3://"):
        bucket, _, prefix = text[5:].partition("/")
        if not bucket:
            raise ValueError(f"{text!r} names no bucket; write s3://BUCKET/PREFIX")
        return S3Destination(bucket, prefix, endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
    return FolderDestination(Path(text).expanduser())


def check_folder(path: Path) -> str | None:
    """Why `path` cannot take the report, or None. Checked before any work starts."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"{probe} is a file, not a folder"
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable"
    return None


async def deliver(files: Sequence[Path], staged_dir: Path, destination: Destination) -> list[str]:
    """Copy or upload `files` (all under `staged_dir`), keeping their relative paths."""
    if isinstance(destination, FolderDestination):
        return await run_in_thread(_to_folder, files, staged_dir, destination.path)
    return await run_in_thread(_to_s3, files, staged_dir, destination)


def _to_folder(files: Sequence[Path], staged_dir: Path, out: Path) -> list[str]:
    if out.resolve() == staged_dir.resolve():
        return [str(f) for f in files]
    written: list[str] = []
    try:
        for f in files:
            dest = out / f.relative_to(staged_dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest)
            written.append(str(dest))
    except OSError as exc:
        raise DeliveryError(
            f"cannot write the report to {out} ({exc.strerror or exc}); the finished report is kept in "
            f"{staged_dir}. Choose a writable folder (--out DIR) or copy it from there.",
            staged_dir,
        ) from exc
    return written


def _to_s3(files: Sequence[Path], staged_dir: Path, dest: S3Destination) -> list[str]:
    try:
        import boto3
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise DeliveryError(
            f"S3 delivery needs boto3 (pip install 'harmonygraph[report]'); the report is kept in {staged_dir}",
            staged_dir,
        ) from exc
    client: Any = boto3.client("s3", endpoint_url=dest.endpoint_url, region_name=dest.region_name)
    prefix = dest.prefix.strip("/")
    uris: list[str] = []
    try:
        for f in files:
            key = "/".join(p for p in (prefix, f.relative_to(staged_dir).as_posix()) if p)
            content_type = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
            client.upload_file(str(f), dest.bucket, key, ExtraArgs={"ContentType": content_type})
            uris.append(f"s3://{dest.bucket}/{key}")
    except (Boto3Error, BotoCoreError, ClientError) as exc:
        raise DeliveryError(
            f"uploading to {dest.describe()} failed ({exc}); the report is kept in {staged_dir}. "
            "Check the bucket name, credentials and endpoint URL.",
            staged_dir,
        ) from exc
    return uris
