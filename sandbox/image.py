"""Building the sandbox image: from the Dockerfile with a registry, offline without one.

The offline build makes a Debian root filesystem with `debootstrap` from the mirror this
machine's apt already uses (read from the apt sources at run time, so no host name is
written here), adds the non-root `sandbox` user and imports the tree with
`docker import`. Debian's packaged numpy, pandas, matplotlib and scipy are used, so
nothing is fetched from PyPI or Docker Hub.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import SandboxConfig
from .docker_backend import SANDBOX_UID, docker_client
from .errors import ImageBuildError

__all__ = [
    "DEBIAN_PACKAGES",
    "AptSource",
    "BuildReport",
    "build_image",
    "build_offline",
    "build_with_dockerfile",
    "dockerfile_text",
    "read_apt_source",
]

Progress = Callable[[str], None]

DEBIAN_PACKAGES = [
    "python3",
    "python3-numpy",
    "python3-pandas",
    "python3-matplotlib",
    "python3-scipy",
    "fonts-dejavu-core",
    "ca-certificates",
]

# Trimmed from the root filesystem: nothing in the sandbox reads them.
_PRUNE = [
    "var/cache/apt/archives",
    "var/lib/apt/lists",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
]

_IMAGE_CHANGES = [f"USER {SANDBOX_UID}:{SANDBOX_UID}", "WORKDIR /mnt/data", 'CMD ["python3"]']


def dockerfile_text() -> str:
    return (Path(__file__).with_name("Dockerfile")).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...] = ("main",)


@dataclass(slots=True)
class BuildReport:
    image: str
    method: str
    seconds: float
    image_id: str
    size_mb: float


def _parse_one_line(line: str) -> AptSource | None:
    line = line.split("#", 1)[0].strip()
    if not line.startswith("deb "):
        return None
    # Drop `[signed-by=...]` style options.
    parts = re.sub(r"\[[^\]]*\]", " ", line).split()
    if len(parts) < 3:
        return None
    return AptSource(parts[1], parts[2], tuple(parts[3:]) or ("main",))


def _parse_deb822(text: str) -> list[AptSource]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        comps = tuple(fields.get("components", "main").split())
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                out.append(AptSource(uri, suite, comps))
    return out


def read_apt_source(root: Path = Path("/etc/apt")) -> AptSource:
    """The main Debian archive this machine's apt uses (not -security or -updates)."""
    found: list[AptSource] = []
    main_list = root / "sources.list"
    if main_list.exists():
        found += [s for s in map(_parse_one_line, main_list.read_text().splitlines()) if s]
    parts = root / "sources.list.d"
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            if f.suffix == ".list":
                found += [s for s in map(_parse_one_line, f.read_text().splitlines()) if s]
            elif f.suffix == ".sources":
                found += _parse_deb822(f.read_text())
    for src in found:
        if "-" not in src.suite and "security" not in src.uri and "/" not in src.suite:
            return src
    raise ImageBuildError(
        f"no Debian archive found in {root}/sources.list or sources.list.d: the offline "
        "build needs an apt mirror (a `deb <uri> <suite> main` entry)"
    )


def _run(cmd: list[str], progress: Progress, what: str) -> None:
    progress(f"{what}: {' '.join(cmd[:6])}{' ...' if len(cmd) > 6 else ''}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ImageBuildError(
            f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}"
        )


def _image_report(client: Any, image: str, method: str, t0: float) -> BuildReport:
    img = client.images.get(image)
    return BuildReport(
        image=image,
        method=method,
        seconds=round(time.perf_counter() - t0, 1),
        image_id=img.id[:19],
        size_mb=round(img.attrs.get("Size", 0) / 1e6, 1),
    )


def build_offline(
    config: SandboxConfig,
    *,
    progress: Progress = lambda _msg: None,
    source: AptSource | None = None,
    workdir: Path | None = None,
) -> BuildReport:
    """debootstrap a Debian rootfs with the scientific stack and `docker import` it."""
    if os.geteuid() != 0:
        raise ImageBuildError("the offline build runs debootstrap and must run as root")
    if not shutil.which("debootstrap"):
        raise ImageBuildError(
            "debootstrap is not installed: `apt-get install -y debootstrap` (or run "
            ".ci/setup-docker)"
        )
    client = docker_client()
    t0 = time.perf_counter()
    src = source or read_apt_source()
    base = workdir or config.home / "build"
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rootfs-", dir=base))
    rootfs = tmp / "rootfs"
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--components={','.join(src.components)}",
                f"--include={','.join(DEBIAN_PACKAGES)}",
                src.suite,
                str(rootfs),
                src.uri,
            ],
            progress,
            f"debootstrap {src.suite} from {src.uri}",
        )
        progress("adding the sandbox user and trimming the root filesystem")
        with open(rootfs / "etc/passwd", "a") as fh:
            fh.write(f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:/mnt/data:/usr/sbin/nologin\n")
        with open(rootfs / "etc/group", "a") as fh:
            fh.write(f"sandbox:x:{SANDBOX_UID}:\n")
        (rootfs / "mnt/data").mkdir(parents=True, exist_ok=True)
        for rel in _PRUNE:
            target = rootfs / rel
            if target.is_dir():
                shutil.rmtree(target)
                target.mkdir(parents=True)
        repo, _, tag = config.image.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = config.image, "latest"
        progress(f"importing the root filesystem as {repo}:{tag}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            # A generator of large chunks: requests would iterate a raw pipe line by
            # line, which makes a 1 GB import take minutes instead of seconds.
            client.api.import_image_from_stream(
                _chunks(tar.stdout), repository=repo, tag=tag, changes=_IMAGE_CHANGES
            )
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()
        if tar.returncode != 0:
            raise ImageBuildError(f"tar of the root filesystem failed (exit {tar.returncode})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _image_report(client, config.image, "offline (debootstrap + docker import)", t0)


def _chunks(stream: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


def build_with_dockerfile(
    config: SandboxConfig, *, progress: Progress = lambda _msg: None
) -> BuildReport:
    """`docker build` from the packaged Dockerfile (needs a registry and PyPI)."""
    import docker.errors

    client = docker_client()
    t0 = time.perf_counter()
    progress(f"docker build -t {config.image} (Dockerfile)")
    try:
        for chunk in client.api.build(
            fileobj=io.BytesIO(dockerfile_text().encode()),
            tag=config.image,
            rm=True,
            decode=True,
        ):
            if "error" in chunk:
                raise ImageBuildError(f"docker build failed: {chunk['error']}")
            line = (chunk.get("stream") or "").strip()
            if line:
                progress(line)
    except docker.errors.APIError as exc:
        raise ImageBuildError(f"docker build failed: {exc}") from None
    return _image_report(client, config.image, "dockerfile", t0)


def build_image(
    config: SandboxConfig,
    *,
    offline: bool | None = None,
    progress: Progress = lambda _msg: None,
) -> BuildReport:
    """Build the image; `offline=None` tries the Dockerfile first and falls back."""
    if offline:
        return build_offline(config, progress=progress)
    try:
        return build_with_dockerfile(config, progress=progress)
    except ImageBuildError as exc:
        if offline is False:
            raise
        progress(f"Dockerfile build failed ({str(exc).splitlines()[0][:200]}); building offline")
        return build_offline(config, progress=progress)
