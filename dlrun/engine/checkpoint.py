"""Checkpoints: state dicts and plain metadata only, so `torch.load(path, weights_only=True)` reads them;
written atomically (a temp file in the same folder, then os.replace), so a crash never leaves half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from dlrun.errors import DlrunError, unreadable_reason


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
    """Write atomically; a full disk or a folder that cannot be written leaves the previous file as it was."""
    try:
        atomic_write_bytes(path, lambda f: torch.save(state, f))
    except OSError as err:
        raise DlrunError(f"cannot write the checkpoint {path}: {err.strerror or err} (a full disk or a folder that "
                         "cannot be written?); the previous checkpoint, if any, is intact") from None


# what every checkpoint that dlrun writes holds
REQUIRED = {"last.pt": ("model", "optimizer", "early_stop", "rng", "epoch", "history", "meta"),
            "best.pt": ("model", "epoch")}


def load(path: Path, required: tuple[str, ...] | None = None) -> dict[str, Any]:
    """A dlrun checkpoint, read with weights_only=True: a file holding anything but tensors and plain values
    (a pickled object that would run code) is refused before any of it runs."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DlrunError(f"checkpoint {path} does not exist") from None
    except Exception as err:  # noqa: BLE001 - unpickling errors of every kind: the file is not a checkpoint we wrote
        raise DlrunError(f"cannot read the checkpoint {path}: {unreadable_reason(err)}; resume from a run folder that dlrun "
                         "wrote, or start a new run") from None
    needed = required if required is not None else REQUIRED.get(path.name, ("model",))
    absent = [key for key in needed if not isinstance(state, dict) or key not in state]
    if absent:
        raise DlrunError(f"{path} is not a dlrun checkpoint: it lacks {', '.join(absent)} (dlrun writes "
                         "checkpoints/last.pt and best.pt in each run folder)")
    return state



def find(resume: str) -> Path:
    """`trainer.resume` may be a run folder (its checkpoints/last.pt) or a checkpoint file."""
    p = Path(resume).expanduser()
    candidate = p / "checkpoints" / "last.pt" if p.is_dir() else p
    if not candidate.is_file():
        looked = f"{candidate}" if p.is_dir() else f"{p}"
        raise DlrunError(f"trainer.resume={resume!r}: no checkpoint at {looked} "
                         "(give a run folder that has checkpoints/last.pt, or a .pt file)")
    return candidate
