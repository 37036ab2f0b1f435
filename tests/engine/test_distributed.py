"""`accelerate launch -m engine train run.yaml` with two CPU processes (gloo): the multi-GPU path,
exercised without GPUs. Only rank 0 reports and saves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_train import tiny_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("accelerate", path=os.path.dirname(sys.executable)) is None,
                    reason="accelerate CLI not installed")
def test_two_process_run_reports_once_and_saves_one_adapter(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path, max_steps=4, batch_size=2)
    run_file = tmp_path / "run.yaml"
    cfg.save(run_file)
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([accelerate, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "engine", "train",
                           str(run_file), "--format", "json"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds.count("started") == 1 and kinds.count("finished") == 1
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert (Path(cfg.output_dir) / "adapter" / "adapter_model.safetensors").exists()
