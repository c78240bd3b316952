"""The scale benchmarks still run against the current API (tiny sizes; figures not checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_scale_benchmark_runs_train_evaluate_mining_and_store(tmp_path):
    result = _run("scale.py", "--sizes", "2000", "--dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    (row,) = report["rows"]
    assert row["n_docs"] == 2000 and row["train"]["loss_used"] == "corpus"
    assert row["train"]["stages"]["epochs"] > 0 and "verdict" in row["evaluate"]
    assert 0 < report["mining"]["recall"] <= 1 and report["store"]["vectors"] == 2000


def test_store_layout_probe_runs(tmp_path):
    result = _run("store_layout.py", "--vectors", "5000", "--path", str(tmp_path / "l.sqlite"))
    assert result.returncode == 0, result.stderr
    assert "5,000 vectors" in result.stdout and "vectors/s" in result.stdout
