"""Writing files so that a stop at any moment leaves the old file or the new one, never a part; and what a file is
(its SHA-256)."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from pathlib import Path

from bench.core.errors import BenchError, DiskFull

NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def sha256_of(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as the store records files (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part. A write that
    fails for lack of room raises DiskFull; the old file, if any, is untouched."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _write_error(path, exc) from exc
    try:
        # mkstemp creates the file 0600; a report or ONNX file gets the permissions any new file gets (umask).
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from exc
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_error(path: Path, exc: OSError) -> BenchError:
    if exc.errno in NO_ROOM:
        return DiskFull(
            f"no room to write {path} ({exc.strerror}); earlier results are intact: free some space and resume"
        )
    return BenchError(f"cannot write {path}: {exc.strerror or exc}")


def no_room(exc: BaseException, path: str | Path | None = None) -> DiskFull | None:
    """DiskFull when ``exc`` or what caused it (tools wrap it: torch.onnx, onnx, onnxruntime) is a write that found
    no room (disk full, quota, file size limit): no other exporter or method would do better, and nothing about the
    model failed. None otherwise. ``path``: the file being written, when the error does not name it."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:
            where = exc.filename or path or "a file"
            return DiskFull(f"no room to write {where} ({exc.strerror}); earlier results are intact: free some space")
        exc = exc.__cause__ or exc.__context__
    return None


def os_error_line(exc: OSError) -> str:
    """An OSError as one line naming what it is about: "cannot use /x/y: File name too long"."""
    if exc.errno in NO_ROOM:
        return f"no room to write {exc.filename or 'a file'} ({exc.strerror}); earlier results are intact"
    names = " -> ".join(str(n) for n in (exc.filename, exc.filename2) if n is not None)
    what = exc.strerror or str(exc)
    return f"cannot use {names}: {what}" if names else f"{what} (an operating system error)"
