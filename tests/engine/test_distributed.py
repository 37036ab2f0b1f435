"""Data parallel (DDP) with two CPU processes over gloo, started the way a cluster starts it: the
sbatch script `peft-studio launch --slurm` writes, run here with a stand-in `srun` that starts
one launcher per "node" as a local process (two nodes of one process each). Only rank 0
reports and saves.

(This test used to start `accelerate launch --cpu --num_processes 2`, which starts a single
process: accelerate's CPU mode needs mpirun for more. It now checks that two ranks really
trained together.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine.test_train import tiny_config

REPO = Path(__file__).resolve().parents[2]

# Stand-in srun: skip srun's own options, then run the command once per node, each with the
# variables Slurm gives a task, and wait for all of them.
FAKE_SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
  SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 "$@" &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
exit $rc
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(sys.platform != "linux", reason="multi-process runs are tested on Linux")
def test_two_process_run_reports_once_and_saves_one_adapter(tiny_model_dir, tmp_path):
    cfg = tiny_config(tiny_model_dir, tmp_path, max_steps=4, batch_size=2)
    cfg.model.dtype = "float32"        # the script plans for GPU nodes; these "nodes" are CPU processes
    run_file = tmp_path / "run.yaml"
    cfg.save(run_file)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    printed = subprocess.run([sys.executable, "-m", "engine", "launch", str(run_file), "--nodes", "2",
                              "--gpus-per-node", "1", "--slurm", "--print"], cwd=REPO, env=env,
                             capture_output=True, text=True, timeout=300)
    assert printed.returncode == 0, printed.stderr[-3000:]
    script = Path(cfg.output_dir) / "slurm.sbatch"
    assert script.read_text() == printed.stdout
    subprocess.run(["bash", "-n", str(script)], check=True)

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(FAKE_SRUN)
    (bin_dir / "srun").chmod(0o755)
    job_env = {**env, "PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "SLURM_NNODES": "2",
               "SLURM_JOB_NODELIST": "localhost", "MAIN_PROCESS_IP": "127.0.0.1",
               "MAIN_PROCESS_PORT": str(free_port())}
    proc = subprocess.run(["bash", str(script)], cwd=tmp_path, env=job_env, capture_output=True, text=True,
                          timeout=420)
    assert proc.returncode == 0, proc.stderr[-4000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kinds = [e["event"] for e in events]
    assert kinds.count("started") == 1 and kinds.count("finished") == 1
    started = events[kinds.index("started")]
    # Two ranks on two "nodes" trained as one data-parallel run (ddp: the CLI's --nodes with a
    # single-process run file).
    assert started["world_size"] == 2 and started["distributed_type"] == "MULTI_CPU"
    assert started["strategy"] == "ddp"
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3, 4]
    assert (Path(cfg.output_dir) / "adapter" / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in Path(cfg.output_dir).glob("adapter*")) == ["adapter"]
