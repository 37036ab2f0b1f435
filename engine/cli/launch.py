"""`peft-studio launch run.yaml`: train over several processes, GPUs or nodes.

    peft-studio launch run.yaml                          # train.distributed as the run file says
    peft-studio launch run.yaml --strategy fsdp --num-processes 2
    peft-studio launch run.yaml --nodes 2 --gpus-per-node 8 --slurm --print   # show the sbatch script
    peft-studio launch run.yaml --nodes 2 --gpus-per-node 8 --slurm           # write it and sbatch it

Plain ``accelerate launch -m engine train run.yaml`` works too: each rank reads the strategy
from the run file (engine.distributed.runtime).
"""

from __future__ import annotations

import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "launch", help="train over several processes/GPUs/nodes (accelerate launch, or a Slurm script)",
        description="Write accelerate's config for the run file's train.distributed into the run folder "
                    "and start the ranks with `accelerate launch`, or write an sbatch script (--slurm).")
    p.add_argument("run_file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set train.distributed.fsdp.cpu_offload=true")
    p.add_argument("--strategy", choices=["single", "ddp", "fsdp", "deepspeed"],
                   help="train.distributed.strategy for this launch")
    p.add_argument("--num-processes", type=int, metavar="N", help="processes on this machine (one per GPU)")
    p.add_argument("--nodes", type=int, metavar="N", help="machines taking part (with --gpus-per-node)")
    p.add_argument("--gpus-per-node", type=int, metavar="G", help="processes (GPUs) on each machine")
    p.add_argument("--slurm", action="store_true", help="write an sbatch script into the run folder and "
                                                         "submit it with sbatch (see --print)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="with --slurm: print the script and do not submit it")
    p.add_argument("--partition", default="", help="--slurm: the partition (#SBATCH --partition)")
    p.add_argument("--time", default="", help="--slurm: the time limit, e.g. 12:00:00")
    p.add_argument("--account", default="", help="--slurm: the account to charge")
    p.add_argument("--cpus-per-task", type=int, default=0, help="--slurm: CPU cores per node's task")
    p.add_argument("--resume", metavar="CHECKPOINT", help="resume from a checkpoint folder or `latest`")
    p.add_argument("--format", choices=["human", "json", "auto"], default="human",
                   help="stdout: readable lines (default; `auto` is the same) or rank 0's JSON-lines events")
    p.add_argument("--no-stdin", action="store_true", help="do not listen for `stop` on stdin")
    p.set_defaults(func=run)


def _positive(path: str, value) -> None:
    from engine.errors import ConfigError

    if value is not None and value < 1:
        raise ConfigError(path, "must be ≥ 1", value)


def run(args) -> int:
    from engine.config import RunConfig
    from engine.distributed import launch, slurm

    for path, value in (("--num-processes", args.num_processes), ("--nodes", args.nodes),
                        ("--gpus-per-node", args.gpus_per_node)):
        _positive(path, value)
    cfg = RunConfig.load(args.run_file)
    if args.set:
        cfg = cfg.with_overrides(args.set)
    if args.resume:
        cfg.train.resume_from = args.resume
    cfg = launch.apply_topology(cfg, strategy=args.strategy, num_processes=args.num_processes,
                                nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    # The method's own refusals and a resume's checks (engine.training.resume) before launch writes
    # its files into the run folder: a refused run leaves no folder, a refused resume its run as it was.
    from pathlib import Path

    from engine.distributed.preflight import check_strategy
    from engine.distributed.runtime import cuda_available
    from engine.methods import preflight
    from engine.training.from_adapter import adopted
    from engine.training.resume import AlreadyComplete, plan_resume

    cfg = adopted(cfg.validate())  # a run continuing an adapter: its settings, checked (method.from_adapter)
    check_strategy(cfg, on_gpu=True if args.slurm else cuda_available(), cluster=bool(args.slurm))
    preflight(cfg)
    try:
        plan_resume(cfg, Path(cfg.output_dir).expanduser())
    except AlreadyComplete as e:
        print(e)
        return 0
    if args.slurm:
        d = cfg.train.distributed
        # The job runs on the cluster's GPU nodes, not here.
        files = launch.prepare(cfg, on_gpu=True, absolute=True, cluster=True)
        opts = slurm.SlurmOptions(nodes=d.num_machines, gpus_per_node=d.processes_per_machine,
                                  partition=args.partition, time=args.time, account=args.account,
                                  cpus_per_task=args.cpus_per_task)
        script = slurm.write(files, opts)
        if args.print_only:
            sys.stdout.write(slurm.render(files, opts))
            print(f"# written: {script} (with {files.run_file.name} and {files.accelerate_config.name}); "
                  f"submit with `sbatch {script}`", file=sys.stderr)
            return 0
        print(slurm.submit(script))
        return 0
    files = launch.prepare(cfg)
    train_args = ["--format", args.format]
    if args.no_stdin:
        train_args.append("--no-stdin")
    return launch.run(files, train_args)
