"""The run folder's layout, in one place: what the training job, phase 2 and evaluation write where,
and the lock that keeps it to one writer at a time.

<run>/config.yaml              the resolved config the run was started with
<run>/checkpoints/last         resume state (weights, optimizer, RNG, step), every checkpoint_every
<run>/checkpoints/best         the acting weights with the lowest validation loss
<run>/train_history.json       the logged training metrics
<run>/tensorboard/             curves
<run>/results.json, report.md  the final evaluation (plots and video beside them)
<run>/eval/<checkpoint>/       a later evaluation of one checkpoint (scripts/eval.py)
<run>/.lock                    held by the one process writing into the run (`writer_lock`)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vqbet.io.full_disk import DiskFull, disk_full_error

LOCK_FILE = ".lock"


class RunFolderBusy(RuntimeError):
    """Another process is writing into the run folder."""


@contextlib.contextmanager
def writer_lock(folder: str | os.PathLike, job: str) -> Iterator[Path]:
    """Hold the run folder `folder` (created if missing) for one writer: an advisory `flock` on
    `<folder>/.lock`, which records the holder (`job`, pid, host). A second writer gets
    RunFolderBusy naming the holder. The kernel drops the lock when its process ends, however it
    ends, so a killed run leaves no stale lock (on a local file system; NFS may not honour flock).
    A folder this call created and nobody wrote into is removed again. Yields the folder."""
    import fcntl  # POSIX; the library's jobs run on Linux and macOS

    root = Path(folder)
    created = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise RunFolderBusy(
                f"{root} is being written by {holder}: one writer at a time; wait for it to end, or "
                "choose another run_dir (or out)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{job} (pid {os.getpid()} on {socket.gethostname()})\n".encode(), 0)
        try:
            yield root
        finally:
            os.ftruncate(fd, 0)
            if created and root.is_dir() and os.listdir(root) == [LOCK_FILE]:  # nothing written: no folder
                (root / LOCK_FILE).unlink()
                root.rmdir()
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def undone_if_disk_full(
    folder: Path, *, created: bool | None = None, keep: Callable[[Path], bool] | None = None
) -> Iterator[None]:
    """When the disk fills up inside the block: a `folder` the job created (`created`; default:
    it does not exist yet) is removed again unless `keep(folder)` (e.g. it holds a checkpoint to
    resume from), and the error is one DiskFull naming the path and what was kept. Files written
    before are whole either way (checkpoints and reports are replaced atomically)."""
    created = not folder.exists() if created is None else created
    try:
        yield
    except BaseException as err:
        full = disk_full_error(err, folder)
        if full is None:
            raise
        if created and folder.exists() and not (keep is not None and keep(folder)):
            shutil.rmtree(folder, ignore_errors=True)
            note = f"; {folder} was removed (this job had made it, and nothing in it was worth keeping)"
        elif created:
            note = f"; {folder} keeps what was written before (checkpoints whole: resume=true goes on)"
        else:
            note = f"; what {folder} held before is unchanged or replaced whole, file by file"
        raise DiskFull(full.path, note) from None


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder."""

    root: Path

    @classmethod
    def of(cls, path: str | os.PathLike) -> RunDir:
        return cls(Path(path))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | os.PathLike) -> RunDir:
        """The run a checkpoint folder (<run>/checkpoints/<name>) belongs to."""
        return cls(Path(checkpoint).parent.parent)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def last(self) -> Path:
        return self.root / "checkpoints" / "last"

    @property
    def best(self) -> Path:
        return self.root / "checkpoints" / "best"

    @property
    def history(self) -> Path:
        return self.root / "train_history.json"

    @property
    def results(self) -> Path:
        """The final evaluation's results.json (an evaluation's own folder has one too)."""
        return self.root / "results.json"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    def evaluation(self, checkpoint: str | os.PathLike) -> Path:
        """Where scripts/eval.py reports on `checkpoint` unless told otherwise."""
        return self.root / "eval" / Path(checkpoint).name
