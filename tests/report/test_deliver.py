"""Delivery to a folder and to S3-compatible storage (moto's server over HTTP on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harmonygraph.graphs.deliver import (
    DeliveryError,
    FolderDestination,
    S3Destination,
    check_folder,
    deliver,
    parse_destination,
)

from tests.ci import require


@pytest.fixture
def staged(tmp_path: Path) -> list[Path]:
    root = tmp_path / "staged"
    (root / "figures").mkdir(parents=True)
    files = [root / "report.md", root / "report.pdf", root / "figures" / "fig01-a.png"]
    for f in files:
        f.write_bytes(f"content of {f.name}".encode())
    return files


async def test_folder(tmp_path: Path, staged: list[Path]) -> None:
    out = tmp_path / "deep" / "out"
    written = await deliver(staged, tmp_path / "staged", FolderDestination(out))
    assert written == [
        str(out / "report.md"),
        str(out / "report.pdf"),
        str(out / "figures" / "fig01-a.png"),
    ]
    assert (out / "figures" / "fig01-a.png").read_bytes() == b"content of fig01-a.png"


async def test_unwritable_folder_names_where_the_report_is(
    tmp_path: Path, staged: list[Path]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert check_folder(blocker / "out") == f"{blocker} is a file, not a folder"
    with pytest.raises(DeliveryError) as info:
        await deliver(staged, tmp_path / "staged", FolderDestination(blocker / "out"))
    assert f"the finished report is kept in {tmp_path / 'staged'}" in str(info.value)
    assert info.value.staged_dir == tmp_path / "staged" and all(f.exists() for f in staged)


def test_parse_destination() -> None:
    assert parse_destination(
        "s3://bucket/reports/2026", endpoint_url="http://h:9000"
    ) == S3Destination("bucket", "reports/2026", "http://h:9000")
    assert parse_destination("out") == FolderDestination(Path("out"))
    with pytest.raises(ValueError, match="names no bucket"):
        parse_destination("s3:///x")


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    require("boto3")
    server_mod = require("moto.server")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def test_s3_upload_over_http(tmp_path: Path, staged: list[Path], s3_endpoint: str) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="reports")
    uris = await deliver(
        staged, tmp_path / "staged", S3Destination("reports", "runs/1/", s3_endpoint)
    )
    assert uris == ["s3://reports/runs/1/report.md", "s3://reports/runs/1/report.pdf",
                    "s3://reports/runs/1/figures/fig01-a.png"]  # fmt: skip
    obj = client.get_object(Bucket="reports", Key="runs/1/report.pdf")
    assert (
        obj["Body"].read() == b"content of report.pdf" and obj["ContentType"] == "application/pdf"
    )


async def test_s3_missing_bucket_keeps_the_report(
    tmp_path: Path, staged: list[Path], s3_endpoint: str
) -> None:
    with pytest.raises(DeliveryError) as info:
        await deliver(staged, tmp_path / "staged", S3Destination("no-such-bucket", "", s3_endpoint))
    msg = str(info.value)
    assert "uploading to s3://no-such-bucket failed" in msg and "NoSuchBucket" in msg
    assert f"the report is kept in {tmp_path / 'staged'}" in msg
