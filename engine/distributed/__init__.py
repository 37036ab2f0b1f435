"""Beyond one process: strategies (DDP, FSDP, DeepSpeed), accelerate configs, launch, Slurm."""
