"""`peft-studio launch run.yaml`: write accelerate's config for the run file's strategy into the
run folder and start the ranks with ``accelerate launch``.

What lands in the run folder (``output_dir``), so that a run is reproducible and every node of a
cluster reads the same files from shared storage:

* ``run.yaml`` — the resolved run file (overrides and ``--nodes``/``--gpus-per-node`` applied);
* ``accelerate_config.yaml`` — accelerate's config (``engine.distributed.accelerate_env``);
* ``slurm.sbatch`` — with ``--slurm`` (``engine.distributed.slurm``).

Each rank then runs ``python -m engine train run.yaml``; rank 0 prints the events (JSON lines on
stdout, as a single-process run does), every rank reads ``stop`` on its inherited stdin, and the
ranks agree at each step boundary (engine.training.stop's all-reduce), so Stop reaches them all.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ACCELERATE_CONFIG = "accelerate_config.yaml"
RUN_FILE = "run.yaml"


@dataclass
class LaunchFiles:
    """Where ``prepare`` wrote the files, and the resolved config."""

    run_dir: Path
    run_file: Path
    accelerate_config: Path
    cfg: object


def apply_topology(cfg, *, strategy: str | None = None, num_processes: int | None = None,
                   nodes: int | None = None, gpus_per_node: int | None = None):
    """``cfg`` with the command line's topology applied to ``train.distributed`` (a copy).
    ``--nodes N --gpus-per-node G`` means N machines × G processes; ``--num-processes`` the
    total on one machine. A run file with strategy single and more than one process becomes
    ddp (the plain data-parallel meaning of "several processes")."""
    import copy

    cfg = copy.deepcopy(cfg)
    d = cfg.train.distributed
    if strategy:
        d.strategy = strategy
    if nodes is not None or gpus_per_node is not None:
        n = nodes if nodes is not None else d.num_machines
        g = gpus_per_node if gpus_per_node is not None else d.processes_per_machine
        d.num_machines, d.num_processes = n, n * g
    elif num_processes is not None:
        d.num_processes = num_processes
    if d.strategy == "single" and (d.num_processes > 1 or d.num_machines > 1):
        d.strategy = "ddp"
    return cfg


def prepare(cfg, *, on_gpu: bool | None = None, main_process_ip: str | None = None,
            absolute: bool = False, cluster: bool = False) -> LaunchFiles:
    """Validate ``cfg`` (preflight included: a method that cannot be sharded is refused here,
    before any process starts) and write run.yaml and accelerate_config.yaml into its run folder.

    ``absolute``: make ``output_dir`` absolute first (a cluster job runs from another working
    directory). ``on_gpu``: whether the ranks will see GPUs (default: this machine's);
    ``cluster``: the ranks run elsewhere (packages are not looked for here)."""
    import yaml

    from engine.atomic import write_text
    from engine.distributed.accelerate_env import accelerate_config
    from engine.distributed.layers import decoder_layer_classes_for
    from engine.distributed.preflight import check_strategy
    from engine.methods import effective_quantization
    from engine.models import resolve_dtype

    if on_gpu is None:
        from engine.distributed.runtime import cuda_available

        on_gpu = cuda_available()
    cfg.validate()
    check_strategy(cfg, on_gpu=on_gpu, cluster=cluster)
    run_dir = Path(cfg.output_dir).expanduser()
    if absolute:
        run_dir = run_dir.resolve()
        cfg.output_dir = str(run_dir)
    d = cfg.train.distributed
    quantized = bool(effective_quantization(cfg))
    layers = decoder_layer_classes_for(cfg.model) if d.strategy == "fsdp" else []
    if on_gpu and cfg.model.dtype == "auto" and not _local_cuda():
        dtype = "bfloat16"   # GPUs elsewhere (a cluster): what `auto` picks on any card since Ampere
    else:
        dtype = str(resolve_dtype(cfg.model.dtype, "cuda" if on_gpu else "cpu")).replace("torch.", "")
    acc = accelerate_config(d, dtype_name=dtype, quantized=quantized, layer_classes=layers, on_gpu=on_gpu,
                            main_process_ip=main_process_ip)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_file = run_dir / RUN_FILE
    cfg.save(run_file)
    acc_file = run_dir / ACCELERATE_CONFIG
    header = ("# Written by `peft-studio launch` from train.distributed in run.yaml; the run file is "
              "the source,\n# edit that and launch again.\n")
    write_text(acc_file, header + yaml.safe_dump(acc, sort_keys=False))
    return LaunchFiles(run_dir, run_file, acc_file, cfg)


def _local_cuda() -> bool:
    from engine.distributed.runtime import cuda_available

    return cuda_available()


def accelerate_command(files: LaunchFiles, train_args: list[str] | None = None, *,
                       python: str | None = None, extra: list[str] | None = None) -> list[str]:
    """The ``accelerate launch`` command line that starts this machine's ranks.

    ``python -m accelerate.commands.launch`` rather than the ``accelerate`` script: the same
    interpreter (and virtual environment) as ours, whatever is on PATH."""
    return [python or sys.executable, "-m", "accelerate.commands.launch", "--config_file",
            str(files.accelerate_config), *(extra or []), "-m", "engine", "train", str(files.run_file),
            *(train_args or [])]


def child_env(cfg) -> dict:
    """The environment for the launcher: ours, with the GPUs the run file names, and one CPU
    thread per rank on a machine without GPUs when nothing says otherwise (N ranks × all cores
    would oversubscribe them)."""
    import os

    env = dict(os.environ)
    d = cfg.train.distributed
    if d.gpu_ids.strip() != "all":
        env["CUDA_VISIBLE_DEVICES"] = d.gpu_ids.strip()
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // max(1, d.processes_per_machine))))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run(files: LaunchFiles, train_args: list[str] | None = None) -> int:
    """Start ``accelerate launch`` for this machine's ranks and wait; stdin, stdout and stderr
    are inherited (events from rank 0 on stdout, ``stop`` on stdin reaches every rank).
    SIGTERM/SIGINT are passed on to the launcher, which passes them to the ranks (each saves at
    its next step boundary). Returns the launcher's exit code."""
    import signal
    import subprocess

    cmd = accelerate_command(files, train_args)
    proc = subprocess.Popen(cmd, env=child_env(files.cfg))

    def forward(signum, frame):
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
