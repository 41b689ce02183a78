"""Taking files out of a sandbox without trusting anything the sandbox says.

The kernel shares its process with the user's code, so its file list and paths are the
user's to forge. The host therefore reads /mnt/data itself: as a tar archive that the
Docker engine makes (`get_archive`), or, for the local backend, by walking the folder
with no-follow semantics (directory file descriptors, `O_NOFOLLOW`, `O_NONBLOCK`,
`fstat`). Only regular files are taken: links, hard links, FIFOs, devices and sockets
are skipped and said. Every host-side name is built here from a sanitised base name
(`safe_name`) inside a folder the host chose, files are created with `O_EXCL` (nothing
is ever overwritten and no link is followed), and each take is capped in entries, files
and bytes (`TakeLimits`), stopping at the cap and saying what was left.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import stat
import tarfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SandboxFileError
from .results import SandboxFile

__all__ = [
    "DataEntry",
    "FileView",
    "TakeLimits",
    "TakeResult",
    "display_path",
    "entries_from_tar_stream",
    "publish",
    "safe_name",
    "take",
    "walk_nofollow",
]

MAX_NAME_BYTES = 120
_EXT = re.compile(r"\.[A-Za-z0-9]{1,12}$")


def safe_name(raw: str) -> str:
    """A host file name from a hostile sandbox path: its last component, with nothing
    but letters, digits, `.`, `_`, `-` and `+`; no leading dot or dash; at most 120 bytes
    of UTF-8. Never empty, never `.`/`..`, never a separator or control character."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    base = unicodedata.normalize("NFKC", base)
    out = []
    for ch in base:
        if ch in "._-+" or (ch.isascii() and ch.isalnum()):
            out.append(ch)
        elif not ch.isascii() and unicodedata.category(ch)[0] in "LN":
            out.append(ch)
        else:
            out.append("_")
    name = re.sub(r"_{2,}", "_", "".join(out))
    name = re.sub(r"\.{2,}", ".", name).lstrip("._-+")
    match = _EXT.search(name)
    ext = match.group(0) if match else ""
    stem = name[: len(name) - len(ext)] if ext else name
    if not stem.strip("._-+"):
        stem = "file"
    while len((stem + ext).encode("utf-8")) > MAX_NAME_BYTES:
        stem = stem[:-1]
    return stem + ext


def display_path(raw: str, limit: int = 160) -> str:
    """A sandbox path as it may appear in text for the model or a terminal: control,
    format and line/paragraph separator characters escaped (one line, always), long
    names shortened in the middle."""
    out = []
    for ch in raw:
        cat = unicodedata.category(ch)
        if cat[0] == "C" or cat in ("Zl", "Zp"):
            out.append(ch.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(ch)
    text = "".join(out)
    if len(text) > limit:
        text = text[: limit // 2] + "…" + text[-(limit // 2 - 1) :]
    return text


@dataclass(frozen=True, slots=True)
class TakeLimits:
    """Caps on one take of /mnt/data (see `SandboxConfig` for the settings)."""

    max_files: int = 100
    max_bytes: int = 64 * 1024 * 1024
    max_file_bytes: int = 32 * 1024 * 1024
    max_entries: int = 5000
    max_depth: int = 16


@dataclass(slots=True)
class DataEntry:
    """One entry of /mnt/data as the host read it. `name` is the path relative to
    /mnt/data exactly as the file system has it: hostile (any character but NUL)."""

    name: str
    kind: str  # file, dir, symlink, hardlink, fifo, device, socket, other
    size: int = 0
    mtime: float = 0.0
    read: Callable[[int], bytes] | None = None  # files only; valid until the next entry


@dataclass(slots=True)
class TakeResult:
    files: list[SandboxFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    complete: bool = True


class FileView:
    """What the host has seen in a session's /mnt/data: for change detection and to say
    each skipped entry once. Keys are raw names; nothing here is sent back to the
    sandbox."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[str, int, str]] = {}  # name -> (kind, size, sha256)

    def expect(self, name: str, data: bytes) -> None:
        """The host itself put `data` at `name` (an upload): not a change of the code's."""
        self.seen[name.lstrip("/")] = ("file", len(data), hashlib.sha256(data).hexdigest())

    def clear(self) -> None:
        self.seen.clear()


_KIND_WORDS = {
    "symlink": "a symbolic link",
    "hardlink": "a hard link",
    "fifo": "a FIFO",
    "device": "a device",
    "socket": "a socket",
    "other": "not a regular file",
}


def _read_all(entry: DataEntry, limit: int) -> bytes | None:
    """The entry's bytes, or None if it holds more than `limit`."""
    assert entry.read is not None
    parts: list[bytes] = []
    got = 0
    while True:
        chunk = entry.read(min(1 << 20, limit + 1 - got))
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)
        got += len(chunk)
        if got > limit:
            return None


def _create_exclusive(folder: Path, name: str, data: bytes | Iterable[bytes]) -> Path:
    """Write a new file in `folder` named `name` or `name-2`, `name-3`...: created with
    O_EXCL|O_NOFOLLOW, so an existing file, folder or link of that name is never
    touched (the next free name is taken)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise SandboxFileError(
            f"cannot use {folder} for files copied out of the sandbox ({exc}); make it a "
            "writable folder or choose another artifacts directory"
        ) from None
    try:
        match = _EXT.search(name)
        ext = match.group(0) if match else ""
        stem = name[: len(name) - len(ext)] if ext else name
        for n in range(1, 10_000):
            candidate = name if n == 1 else f"{stem}-{n}{ext}"
            try:
                fd = os.open(
                    candidate,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o644,
                    dir_fd=dfd,
                )
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as fh:
                if isinstance(data, bytes | bytearray):
                    fh.write(data)
                else:
                    for chunk in data:
                        fh.write(chunk)
            return folder / candidate
        raise SandboxFileError(f"{folder} holds 10,000 files named like {name}; empty it")
    except OSError as exc:
        raise SandboxFileError(f"could not write {name} in {folder}: {exc}") from None
    finally:
        os.close(dfd)


def publish(src: Path, folder: Path, name: str) -> Path:
    """Copy a taken file (`SandboxFile.local_path`) into `folder` under the sanitised
    `name` (made safe again here), never overwriting: returns where it landed."""

    def chunks() -> Iterator[bytes]:
        with open(src, "rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk

    return _create_exclusive(folder, safe_name(name), chunks())


def take(
    entries: Iterator[DataEntry],
    view: FileView,
    limits: TakeLimits,
    staging: Path | None,
) -> TakeResult:
    """Walk `entries`, keep the regular files that are new or changed since `view`
    (copied into `staging` under sanitised names; None: only update the view)."""
    result = TakeResult()
    present: set[str] = set()
    taken_bytes = 0
    count = 0
    try:
        for entry in entries:
            count += 1
            if count > limits.max_entries:
                result.skipped.append(
                    f"stopped after {limits.max_entries} entries in /mnt/data: later files "
                    "were not looked at (HARMONYGRAPH_SANDBOX_MAX_ENTRIES)"
                )
                result.complete = False
                break
            name = entry.name.strip("/")
            parts = name.split("/")
            if not name or any(p.startswith(".") for p in parts):
                continue  # hidden files and folders (caches, the scratch folder) stay
            if len(parts) > limits.max_depth:
                continue
            present.add(name)
            shown = f"/mnt/data/{display_path(name)}"
            if entry.kind != "file":
                before = view.seen.get(name)
                view.seen[name] = (entry.kind, 0, "")
                if entry.kind != "dir" and (before is None or before[0] != entry.kind):
                    result.skipped.append(
                        f"{shown} is {_KIND_WORDS.get(entry.kind, 'not a regular file')}: "
                        "only regular files are copied out"
                    )
                continue
            before = view.seen.get(name)
            if entry.size > limits.max_file_bytes:
                if before is None or before[:2] != ("file", entry.size):
                    result.skipped.append(
                        f"{shown} is {entry.size} bytes, over the {limits.max_file_bytes}-byte "
                        "limit per file (HARMONYGRAPH_SANDBOX_MAX_FILE_MB): not copied"
                    )
                view.seen[name] = ("file", entry.size, "")
                continue
            data = _read_all(entry, limits.max_file_bytes)
            if data is None:
                continue
            digest = hashlib.sha256(data).hexdigest()
            if before is not None and before[0] == "file" and before[2] == digest:
                continue
            if staging is None:
                view.seen[name] = ("file", len(data), digest)
                continue
            if len(result.files) >= limits.max_files:
                result.skipped.append(
                    f"stopped at {limits.max_files} files copied out in one call "
                    f"(HARMONYGRAPH_SANDBOX_MAX_FILES): {shown} and later files were not copied"
                )
                result.complete = False
                break
            if taken_bytes + len(data) > limits.max_bytes:
                result.skipped.append(
                    f"stopped at {limits.max_bytes} bytes copied out in one call "
                    f"(HARMONYGRAPH_SANDBOX_MAX_FILES_TOTAL_MB): {shown} and later files were "
                    "not copied"
                )
                result.complete = False
                break
            view.seen[name] = ("file", len(data), digest)
            taken_bytes += len(data)
            local = _create_exclusive(staging, safe_name(name), data)
            result.files.append(
                SandboxFile(
                    path=display_path(name),
                    size=len(data),
                    mime_type=mimetypes.guess_type(local.name)[0] or "",
                    name=local.name,
                    sha256=digest,
                    local_path=str(local),
                )
            )
    finally:
        close = getattr(entries, "close", None)
        if close is not None:
            close()
    if result.complete:
        for gone in set(view.seen) - present:
            del view.seen[gone]
    return result


# -- sources -----------------------------------------------------------------------------
class _ChunkReader:
    """A minimal file object over an iterator of byte chunks, for `tarfile` stream mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) - self._pos < n:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            if self._pos:
                del self._buf[: self._pos]
                self._pos = 0
            self._buf += chunk
        end = len(self._buf) if n < 0 else min(len(self._buf), self._pos + n)
        data = bytes(self._buf[self._pos : end])
        self._pos = end
        return data


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    if member.isfifo():
        return "fifo"
    if member.ischr() or member.isblk():
        return "device"
    return "other"


def entries_from_tar_stream(chunks: Iterator[bytes], top: str) -> Iterator[DataEntry]:
    """Entries of a tar stream of the folder `top` (as `docker cp` makes it: every name
    starts with `top/`), read sequentially without buffering the archive."""
    reader: Any = _ChunkReader(chunks)
    with tarfile.open(fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape") as tar:
        for member in tar:
            name = member.name
            if name == top or not name.startswith(top + "/"):
                continue
            kind = _tar_kind(member)
            entry = DataEntry(name[len(top) + 1 :], kind, member.size, float(member.mtime))
            if kind == "file":
                fh = tar.extractfile(member)
                if fh is None:
                    continue
                entry.read = fh.read
            yield entry


def walk_nofollow(root: Path, max_depth: int = 16) -> Iterator[DataEntry]:
    """Entries under `root`, read with directory file descriptors and O_NOFOLLOW: a
    link (even one swapped in while we walk) is reported, never followed; a FIFO is
    opened non-blocking and reported, never read; a file with more than one hard link
    is reported as a hard link (it may be a host file's other name)."""
    try:
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    yield from _walk_fd(top, "", max_depth)


def _walk_fd(dfd: int, prefix: str, depth: int) -> Iterator[DataEntry]:
    try:
        try:
            names = sorted(os.listdir(dfd))
        except OSError:
            return
        for name in names:
            rel = prefix + name
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except OSError:
                continue
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                yield DataEntry(rel, "dir", 0, st.st_mtime)
                if depth <= 1 or name.startswith("."):
                    continue
                try:
                    sub = os.open(
                        name,
                        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=dfd,
                    )
                except OSError:
                    continue
                yield from _walk_fd(sub, rel + "/", depth - 1)
            elif stat.S_ISREG(mode):
                try:
                    fd = os.open(
                        name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd
                    )
                except OSError:
                    continue
                with os.fdopen(fd, "rb") as fh:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode):
                        yield DataEntry(rel, "other")
                    elif fst.st_nlink > 1:
                        yield DataEntry(rel, "hardlink")
                    else:
                        yield DataEntry(rel, "file", fst.st_size, fst.st_mtime, fh.read)
            elif stat.S_ISLNK(mode):
                yield DataEntry(rel, "symlink")
            elif stat.S_ISFIFO(mode):
                yield DataEntry(rel, "fifo")
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                yield DataEntry(rel, "device")
            elif stat.S_ISSOCK(mode):
                yield DataEntry(rel, "socket")
            else:
                yield DataEntry(rel, "other")
    finally:
        os.close(dfd)
