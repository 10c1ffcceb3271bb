"""A full disk (ENOSPC, or a quota: EDQUOT) as one error that names the path, whichever library
hit it: Python's own writes raise OSError, safetensors and h5py raise their own types that only
say "No space left on device" (os error 28). Writers wrap their writes in `naming_full_disk`; the
jobs then undo what they made (vqbet.io.run_dir) and the scripts print the message alone."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

_CODES = (errno.ENOSPC, errno.EDQUOT)
_WORDS = ("No space left on device", "Disk quota exceeded", "os error 28", "errno = 28")


class DiskFull(OSError):
    """No space was left on the device while writing `path`; the message names it and what was
    kept (`note`). An OSError, so callers that handle I/O errors handle this one too."""

    def __init__(self, path: str | os.PathLike, note: str = "") -> None:
        super().__init__(f"{path}: no space left on device{note}")
        self.path, self.note = Path(path), note


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__  # type: ignore[assignment]


def disk_full_error(err: BaseException, path: str | os.PathLike, note: str = "") -> DiskFull | None:
    """`err` (or an error that caused it) as a DiskFull naming the file being written (the
    error's own file name where it has one, else `path`) and `note` (what was kept); None for
    any other error."""
    for cause in _chain(err):
        if isinstance(cause, DiskFull):  # named where it was met: a note given here replaces its own
            return DiskFull(cause.path, note or cause.note)
        coded = isinstance(cause, OSError) and cause.errno in _CODES
        if coded or any(words in str(cause) for words in _WORDS):
            named = getattr(cause, "filename", None) if coded else None
            return DiskFull(named or path, note)
    return None


@contextlib.contextmanager
def naming_full_disk(path: str | os.PathLike, note: str = "") -> Iterator[None]:
    """Re-raise a full disk met inside the block as a one-line DiskFull (see `disk_full_error`)."""
    try:
        yield
    except DiskFull:  # named where it was met
        raise
    except BaseException as err:
        full = disk_full_error(err, path, note)
        if full is None:
            raise
        raise full from None
