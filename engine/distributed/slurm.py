"""An sbatch script for a run over several nodes: one ``accelerate launch`` per node via srun.

The shape is accelerate's own multi-node Slurm example (``examples/slurm/submit_multinode.sh``):
``srun`` starts one task per node; each task runs ``accelerate launch`` with
``--num_machines $SLURM_NNODES --machine_rank $SLURM_NODEID`` and the first node of the
allocation as the rendezvous (``--main_process_ip``), and that launcher starts the node's ranks.
The run folder (run.yaml, accelerate_config.yaml, events, checkpoints, adapter and the job's
output) must be on storage every node sees; ``peft-studio launch --slurm`` makes its path
absolute.

The script names everything it needs in variables at the top, so a person can read and adjust
it before ``sbatch``.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPT = "slurm.sbatch"


@dataclass
class SlurmOptions:
    """What sbatch needs beyond the run file. ``gpus_per_node`` is the processes per node;
    ``partition``/``time``/``account`` are left out of the script when empty."""

    nodes: int
    gpus_per_node: int
    partition: str = ""
    time: str = ""
    account: str = ""
    cpus_per_task: int = 0
    job_name: str = ""


def render(files, opts: SlurmOptions, *, python: str | None = None, workdir: str | None = None) -> str:
    """The sbatch script (text) for the prepared ``files`` (engine.distributed.launch.prepare).

    ``python``: the interpreter on the nodes (default: ours; a cluster usually shares it);
    ``workdir``: where relative data paths resolve (default: the current directory)."""
    q = shlex.quote
    run_dir = str(files.run_dir)
    d = files.cfg.train.distributed
    name = opts.job_name or f"peft-studio-{Path(run_dir).name}"
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --nodes={opts.nodes}",
        "#SBATCH --ntasks-per-node=1",            # one launcher per node; it starts the node's ranks
        f"#SBATCH --gpus-per-node={opts.gpus_per_node}",
        f"#SBATCH --output={run_dir}/slurm-%j.out",
    ]
    if opts.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.time:
        lines.append(f"#SBATCH --time={opts.time}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    lines += [
        "",
        f"# Written by `peft-studio launch --slurm` for {files.run_file}.",
        "# Every node must see RUN_DIR (shared storage) and run the same Python environment.",
        "set -euo pipefail",
        "",
        f"RUN_DIR={q(run_dir)}",
        f"PYTHON={q(python or sys.executable)}",
        f"GPUS_PER_NODE={opts.gpus_per_node}",
        f"cd {q(workdir or str(Path.cwd()))}",
        "",
        "# The rendezvous: the first node of the allocation, on the run file's port.",
        'MAIN_PROCESS_IP="${MAIN_PROCESS_IP:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}"',
        f'MAIN_PROCESS_PORT="${{MAIN_PROCESS_PORT:-{d.main_process_port}}}"',
        "NUM_PROCESSES=$((SLURM_NNODES * GPUS_PER_NODE))",
        "export RUN_DIR PYTHON MAIN_PROCESS_IP MAIN_PROCESS_PORT NUM_PROCESSES",
        "",
        "# One task per node; $SLURM_NODEID is expanded by each task, so it is its own machine rank.",
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '",
        '  exec "$PYTHON" -m accelerate.commands.launch \\',
        '    --config_file "$RUN_DIR/accelerate_config.yaml" \\',
        '    --num_machines "$SLURM_NNODES" --num_processes "$NUM_PROCESSES" \\',
        '    --machine_rank "$SLURM_NODEID" --rdzv_backend static \\',
        '    --main_process_ip "$MAIN_PROCESS_IP" --main_process_port "$MAIN_PROCESS_PORT" \\',
        '    -m engine train "$RUN_DIR/run.yaml" --format json --no-stdin',
        "'",
        "",
    ]
    return "\n".join(lines)


def write(files, opts: SlurmOptions, **kw) -> Path:
    """Write the script into the run folder (atomically) and return its path."""
    from engine.atomic import write_text

    path = files.run_dir / SCRIPT
    write_text(path, render(files, opts, **kw))
    path.chmod(0o755)
    return path


def submit(script: Path) -> str:
    """``sbatch script``; returns sbatch's answer ("Submitted batch job 123"). Raises ConfigError
    when sbatch is not on PATH (the script stays for the user to submit)."""
    import shutil
    import subprocess

    from engine.errors import ConfigError

    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise ConfigError("", f"sbatch is not on PATH here; the script is written: copy the run folder to "
                          f"the cluster if needed and run `sbatch {script}` there")
    out = subprocess.run([sbatch, str(script)], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise ConfigError("", f"sbatch refused {script}: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout.strip()
