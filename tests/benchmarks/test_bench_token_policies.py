"""benchmarks/bench_token_policies.py on a small dataset: a row's tokenizer fields take effect,
and a malformed row is refused by name."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vqbet.data import EpisodeData
from vqbet.data.formats.hdf5 import write_hdf5

ROOT = Path(__file__).resolve().parents[2]


def _bench(source: Path, *rows: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_token_policies.py"), str(source)]
    command += ["--obs-window", "2", "--chunk", "8", "--steps", "2", "--fit-steps", "2"]
    command += ["--calls", "2", "--threads", "1", "--rows", *rows]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_a_rows_tokenizer_fields_change_its_tokenizer(tmp_path):
    rng = np.random.default_rng(0)
    steps = np.cumsum(rng.normal(size=(600, 2)), axis=0).astype(np.float32) * 0.1
    data = EpisodeData(obs=steps, action=steps, episode_ends=np.arange(40, 601, 40))
    source = write_hdf5(tmp_path / "walk.hdf5", data)
    out = _bench(source, "ar:fast", "ar:fast:scale=0.5,vocab_size=300")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r.split(" | ")[1]: r.split(" | ") for r in out.stdout.splitlines() if r.startswith("| ar |")}
    assert set(rows) == {"fast", "fast scale=0.5 vocab_size=300"}
    data_tokens = {name: float(row[2].split(" / ")[0]) for name, row in rows.items()}
    assert data_tokens["fast scale=0.5 vocab_size=300"] < data_tokens["fast"]  # coarser: fewer tokens

    out = _bench(source, "ar:fast:scale=coarse")
    assert out.returncode != 0 and "'scale=coarse' is not field=number" in out.stderr


def test_a_row_without_a_known_family_and_tokenizer_is_refused_by_name():
    from bench_token_policies import parse_row

    assert parse_row("ar:fast:scale=2,vocab_size=512") == ("ar", "fast", {"scale": 2, "vocab_size": 512})
    for row in ("ar", "mlp:rvq", "ar:vq", "ar:fast:scale=2:x"):
        with pytest.raises(SystemExit, match=f"--rows: {row!r} is not family:tokenizer"):
            parse_row(row)
