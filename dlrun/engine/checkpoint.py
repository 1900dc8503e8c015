"""Checkpoints: state dicts and plain metadata only, so `torch.load(path, weights_only=True)` reads them;
written atomically (a temp file in the same folder, then os.replace), so a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dlrun.errors import DlrunError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write_bytes(path: Path, write) -> None:
    """Call write(file_object) on a temp file next to `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable: without it a power cut can leave the folder pointing at the old file."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a file system that cannot open folders (some network mounts): the rename still happened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def save(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def find(resume: str) -> Path:
    """`trainer.resume` may be a run folder (its checkpoints/last.pt) or a checkpoint file."""
    p = Path(resume).expanduser()
    candidate = p / "checkpoints" / "last.pt" if p.is_dir() else p
    if not candidate.is_file():
        looked = f"{candidate}" if p.is_dir() else f"{p}"
        raise DlrunError(f"trainer.resume={resume!r}: no checkpoint at {looked} "
                         "(give a run folder that has checkpoints/last.pt, or a .pt file)")
    return candidate
