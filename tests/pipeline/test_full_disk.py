"""A full disk (ENOSPC) during training, evaluation, conversion or export: one line naming the
path, the folder as it was before the write, never a crash. Simulated by a patched writer, and
by a real 40 KiB tmpfs where this machine lets the tests mount one."""

import errno
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_faults import ENV, ROOT, config

from vqbet.data import EpisodeData, load_dataset, write_hdf5
from vqbet.io import checkpoint
from vqbet.io.full_disk import DiskFull, disk_full_error, naming_full_disk
from vqbet.io.run_dir import undone_if_disk_full
from vqbet.pipeline import train
from vqbet.policies import load_policy

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


@pytest.fixture
def tiny_disk(tmp_path):
    """A 40 KiB tmpfs, or a skip where mounting is not allowed (the patched tests still run)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=40k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a tmpfs is not allowed here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_recognised_whichever_library_met_it(tmp_path):
    coded = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "a.bin"))
    assert str(disk_full_error(coded, tmp_path)) == f"{tmp_path / 'a.bin'}: no space left on device"
    wrapped = RuntimeError("writing failed")
    wrapped.__cause__ = Exception(SAFETENSORS_FULL)  # safetensors' own error type, words only
    assert (
        str(disk_full_error(wrapped, tmp_path / "ckpt", "; kept"))
        == f"{tmp_path / 'ckpt'}: no space left on device; kept"
    )
    assert disk_full_error(OSError(errno.EACCES, "Permission denied"), tmp_path) is None
    assert disk_full_error(ValueError("bad"), tmp_path) is None
    with pytest.raises(ValueError, match="bad"), naming_full_disk(tmp_path):
        raise ValueError("bad")  # anything else goes through unchanged


def test_a_folder_the_job_made_goes_again_unless_it_is_worth_keeping(tmp_path):
    def fill(folder: Path) -> None:
        folder.mkdir()
        (folder / "config.yaml").write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device")

    new = pytest.raises(DiskFull, match=r"new: no space left on device; .*new was removed")
    with new, undone_if_disk_full(tmp_path / "new"):
        fill(tmp_path / "new")
    assert not (tmp_path / "new").exists()
    kept = pytest.raises(DiskFull, match=r"keeps what was written before")
    with kept, undone_if_disk_full(tmp_path / "kept", keep=lambda folder: True):
        fill(tmp_path / "kept")
    assert (tmp_path / "kept" / "config.yaml").is_file()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "results.json").write_text("{}")
    old = pytest.raises(DiskFull, match=r"what .*old held before is unchanged")
    with old, undone_if_disk_full(tmp_path / "old"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (tmp_path / "old" / "results.json").read_text() == "{}"


def full_at(monkeypatch, when) -> None:
    """safetensors' save_file raises its disk-full error where `when(path)` says so."""
    real = checkpoint.save_file

    def save_file(tensors, path, *args, **kwargs):
        if when(Path(path)):
            raise Exception(SAFETENSORS_FULL)
        return real(tensors, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", save_file)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The faults tests' smoke run writes its dataset; here one of our own, small."""
    from vqbet.pipeline import collect

    tmp = tmp_path_factory.mktemp("full_disk")
    return collect("vqbet/MultiReach-v0", 6, tmp / "data.hdf5", workers=1, progress=False)


def test_training_into_a_full_disk_leaves_no_folder_that_holds_no_checkpoint(dataset, monkeypatch):
    tmp = dataset.parent
    full_at(monkeypatch, lambda path: True)
    with pytest.raises(DiskFull, match=r"checkpoints/last: no space left on device; .*run was removed"):
        train(config(tmp, "run"))
    assert not (tmp / "run").exists()


def test_a_full_disk_after_a_checkpoint_keeps_the_checkpoints_whole(dataset, monkeypatch):
    tmp = dataset.parent
    last = tmp / "run2" / "checkpoints" / "last"
    full_at(monkeypatch, lambda path: last.is_dir() and path.parent.name.startswith(".last.tmp"))
    with pytest.raises(DiskFull, match=r"run2 keeps what was written before \(checkpoints whole"):
        train(config(tmp, "run2", "train.checkpoint_every=10"))
    load_policy(last)  # the checkpoint written before the disk filled up is whole
    assert not list(last.parent.glob(".last.tmp-*"))  # and no half-made one lies beside it


def test_conversion_into_a_full_disk_is_one_line_and_no_crash(tiny_disk, tmp_path):
    """HDF5 cannot survive a failed write (the process crashes at exit): the writer must stop first."""
    rng = np.random.default_rng(0)
    data = EpisodeData.from_episodes(
        [{"obs": rng.normal(size=(200, 4)), "action": rng.normal(size=(200, 2))} for _ in range(20)]
    )
    source = write_hdf5(tmp_path / "data.hdf5", data)
    for to in ("hdf5", "lerobot"):
        out = tiny_disk / f"converted_{to}"
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts/convert.py"),
                f"source={source}",
                f"out={out}",
                f"to={to}",
                "fps=10",
            ],
            capture_output=True,
            text=True,
            env=ENV,
        )
        assert done.returncode == 1, done.stderr[-2000:]
        assert f"error: {out}: no space left on device" in done.stderr and "Traceback" not in done.stderr
        assert list(tiny_disk.iterdir()) == []
    assert load_dataset(source).num_steps == 4000


def test_export_into_a_full_disk_raises_and_leaves_nothing(tiny_disk):
    from policy_helpers import make_policy

    with pytest.raises(DiskFull, match=rf"{tiny_disk / 'deploy'}: no space left on device"):
        make_policy().eval().export(tiny_disk / "deploy")
    assert list(tiny_disk.iterdir()) == []
