"""`make gpu-check ARGS=--cpu-dry-run`: the prepared GPU check's CPU-capable steps, small, into a
temporary folder (docs/ untouched). On a CUDA machine the same script measures for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(sys.platform != "linux", reason="the check is a bash script for Linux GPU machines")
def test_cpu_dry_run_runs_every_cpu_capable_step(tmp_path):
    docs = {p: p.stat().st_mtime_ns for p in (REPO / "docs").glob("*.md")}
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--cpu-dry-run", "--out", str(out),
                           "--work", str(tmp_path / "work")], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    results = {r["name"]: r for r in json.loads((out / "gpu-check.json").read_text())}
    assert list(results) == ["env", "cuda-tests", "throughput-qwen", "throughput-llama8b", "fsdp-smoke",
                             "vram-grid", "fsdp-qlora-smoke"]
    for name in ("env", "cuda-tests", "throughput-qwen", "fsdp-smoke", "vram-grid"):
        assert results[name]["status"] == "ok", results[name]
    assert results["throughput-llama8b"]["status"] == results["fsdp-qlora-smoke"]["status"] == "skipped"
    smoke = results["fsdp-smoke"]["figures"]
    assert smoke["distributed_type"] == "FSDP" and smoke["adapter_saved"] and smoke["steps"] == 6
    tp = results["throughput-qwen"]["figures"]
    assert tp["engine_tokens_per_s"] > 0 and tp["baseline_tokens_per_s"] > 0
    report = (out / "gpu-check.md").read_text()
    assert "| step | what | status | time | result |" in report and "fsdp-smoke" in report
    assert (out / "gpu-check.log").exists()
    assert "| fsdp-smoke |" in proc.stdout                 # the summary table is printed too
    assert {p: p.stat().st_mtime_ns for p in (REPO / "docs").glob("*.md")} == docs
