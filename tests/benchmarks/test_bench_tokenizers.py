"""benchmarks/bench_tokenizers.py on a small dataset: the table, the JSON and the plot, with
numbers that follow from the tokenizers' construction."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from vqbet.data import EpisodeData
from vqbet.data.formats.hdf5 import write_hdf5

ROOT = Path(__file__).resolve().parents[2]


def test_the_benchmark_writes_its_table_json_and_plot(tmp_path):
    rng = np.random.default_rng(0)
    steps = np.cumsum(rng.normal(size=(600, 2)), axis=0).astype(np.float32) * 0.1
    data = EpisodeData(obs=steps, action=steps, episode_ends=np.arange(40, 601, 40))
    source = write_hdf5(tmp_path / "walk.hdf5", data)
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_tokenizers.py"), str(source)]
    command += ["--quick", "--chunks", "5", "--tokenizers", "bins", "kmeans", "fast"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    folder = tmp_path / "walk_tokenizers"
    rows = {r["tokenizer"]: r for r in json.loads((folder / "tokenizers.json").read_text())}
    assert set(rows) == {"bins", "kmeans", "fast"}
    assert rows["bins"]["tokens_mean"] == 10 and rows["bins"]["bits"] == 40  # 5 x 2 tokens of 4 bits
    assert rows["kmeans"]["bits"] == 6 and rows["kmeans"]["valid_random"] == 1.0
    assert rows["fast"]["tokens_mean"] < 10 and rows["fast"]["valid_random"] < 1.0
    assert 0 < rows["bins"]["nmse"] < rows["kmeans"]["nmse"]  # 40 bits reconstruct better than 6
    assert "| bins | num_bins=16 | 5 |" in (folder / "tokenizers.md").read_text()
    assert (folder / "rate_distortion.png").stat().st_size > 1000
    settings = '{"bins": [{"num_bins": 4}]}'
    command = [*command[:3], "--chunks", "5", "--settings", settings, "--out", str(tmp_path / "own")]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    (row,) = json.loads((tmp_path / "own" / "tokenizers.json").read_text())
    assert (row["tokenizer"], row["options"], row["bits"]) == ("bins", {"num_bins": 4}, 20)  # 10 x 2 bits
