"""Replace files and folders so that a kill at any instant leaves the old or the new version, never
a half-written one and never none; and clean up what killed writers left behind.

A new version is written beside the target under `.<name>.tmp-<pid>-*`, then swapped in:
- a file, or a folder with nothing at the target yet: one `rename`;
- a folder over an existing one: one `renameat2(RENAME_EXCHANGE)` on Linux (the two folders trade
  places atomically; the old one, now under the temporary name, is then deleted). Where that call
  does not exist (other systems, some network file systems) two renames via `.<name>.old-<pid>`,
  and `recover` puts the old folder back if a kill fell between them.
Temporaries whose writer process is gone are deleted by `clean_stale` (called before each write).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _renameat2() -> ctypes._CFuncPtr | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the system cannot (then nothing moved)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, f"renameat2({a}, {b}, RENAME_EXCHANGE): {os.strerror(err)}")


def temp_prefix(final: Path) -> str:
    """Name prefix of this process's temporaries for `final`."""
    return f".{final.name}.tmp-{os.getpid()}-"


def replace_folder(tmp: Path, final: Path) -> None:
    """Make the complete folder `tmp` the new `final`, atomically (see the module doc)."""
    if not final.exists():
        os.replace(tmp, final)
        return
    if exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # the old version, under the temporary name now
        return
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    os.replace(final, old)
    os.replace(tmp, final)  # a kill between the two renames is undone by `recover`
    shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file whole or not at all: into a temporary beside it, then one rename."""
    final = Path(path)
    tmp = final.with_name(f"{temp_prefix(final)}text")
    try:
        tmp.write_text(text)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(final: Path) -> Path | None:
    """If `final` is missing because a writer was killed between the two renames of the fallback
    swap, move its old version back. Returns the folder put back, if any."""
    if final.exists():
        return None
    olds = sorted(final.parent.glob(f".{final.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return None
    os.replace(olds[-1], final)
    return olds[-1]


def clean_stale(final: Path) -> list[Path]:
    """Delete the temporaries of `final` left by writers that no longer run (after `recover`).
    Returns what was deleted."""
    recover(final)
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)")
    removed = []
    for path in final.parent.glob(f".{final.name}.*"):
        match = pattern.match(path.name)
        if match and not _alive(int(match.group(2))):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed
