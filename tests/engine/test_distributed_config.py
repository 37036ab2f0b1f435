"""train.distributed without starting processes: the run-file section, accelerate's config and
environment for each strategy, the preflight refusals, the Slurm script, the per-GPU estimate."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from engine.config import ConfigError, DistributedConfig, RunConfig
from engine.distributed.accelerate_env import accelerate_config, strategy_env

CONFIGS = Path(__file__).resolve().parents[1] / "data" / "configs"
LAYERS = ["LlamaDecoderLayer"]


def dist(**kw) -> DistributedConfig:
    return RunConfig.from_dict({"train": {"distributed": kw}}).train.distributed


def test_section_round_trips_and_names_bad_fields():
    cfg = RunConfig.from_dict({"train": {"distributed": {"strategy": "fsdp", "num_processes": 4,
                                                         "fsdp": {"cpu_offload": True}}}})
    again = RunConfig.from_yaml(cfg.to_yaml())
    assert again.train.distributed == cfg.train.distributed and again.train.distributed.fsdp.cpu_offload
    over = cfg.with_overrides(["train.distributed.deepspeed.zero_stage=3", "train.distributed.strategy=deepspeed"])
    assert over.train.distributed.deepspeed.zero_stage == 3
    with pytest.raises(ConfigError, match=r"train\.distributed\.fsdp\.sharding: unknown field"):
        RunConfig.from_dict({"train": {"distributed": {"fsdp": {"sharding": "full"}}}})
    with pytest.raises(ConfigError, match=r"train\.distributed\.deepspeed\.zero_stage"):
        RunConfig.from_dict({"train": {"distributed": {"deepspeed": {"zero_stage": 1}}}}).validate()
    with pytest.raises(ConfigError, match=r"num_processes: must be 1 with strategy single"):
        RunConfig.from_dict({"train": {"distributed": {"num_processes": 2}}}).validate()
    with pytest.raises(ConfigError, match=r"hybrid sharding .* needs num_machines ≥ 2"):
        RunConfig.from_dict({"train": {"distributed": {"strategy": "fsdp", "num_processes": 2,
                                                       "fsdp": {"sharding_strategy": "hybrid_shard"}}}}).validate()
    with pytest.raises(ConfigError, match=r"multiple of num_machines"):
        RunConfig.from_dict({"train": {"distributed": {"strategy": "ddp", "num_processes": 3,
                                                       "num_machines": 2}}}).validate()


def test_accelerate_config_per_strategy():
    single = accelerate_config(dist(), dtype_name="bfloat16", quantized=False, layer_classes=LAYERS, on_gpu=True)
    assert single["distributed_type"] == "NO" and single["num_processes"] == 1
    ddp = accelerate_config(dist(strategy="ddp", num_processes=4), dtype_name="bfloat16", quantized=False,
                            layer_classes=LAYERS, on_gpu=True)
    assert ddp["distributed_type"] == "MULTI_GPU" and ddp["mixed_precision"] == "bf16"
    fsdp = accelerate_config(dist(strategy="fsdp", num_processes=2), dtype_name="bfloat16", quantized=False,
                             layer_classes=LAYERS, on_gpu=True)
    f = fsdp["fsdp_config"]
    assert fsdp["distributed_type"] == "FSDP" and f["fsdp_version"] == 2
    assert f["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert f["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP" and f["fsdp_reshard_after_forward"] is True
    assert f["fsdp_state_dict_type"] == "SHARDED_STATE_DICT" and f["fsdp_cpu_ram_efficient_loading"]
    assert f["fsdp_sync_module_states"]      # accelerate's launcher insists, with RAM-efficient loading
    # QLoRA: FSDP1 with flat parameters that do not keep their original identity.
    q = accelerate_config(dist(strategy="fsdp", num_processes=2, fsdp={"sharding_strategy": "shard_grad_op"}),
                          dtype_name="bfloat16", quantized=True, layer_classes=LAYERS, on_gpu=True)["fsdp_config"]
    assert q["fsdp_version"] == 1 and q["fsdp_use_orig_params"] is False
    assert q["fsdp_sharding_strategy"] == "SHARD_GRAD_OP"
    hybrid = accelerate_config(dist(strategy="fsdp", num_processes=16, num_machines=2,
                                    fsdp={"sharding_strategy": "hybrid_shard"}),
                               dtype_name="bfloat16", quantized=False, layer_classes=LAYERS, on_gpu=True)
    assert hybrid["parallelism_config"] == {"parallelism_config_dp_replicate_size": 2,
                                            "parallelism_config_dp_shard_size": 8}
    ds = accelerate_config(dist(strategy="deepspeed", num_processes=8,
                                deepspeed={"zero_stage": 3, "offload_optimizer": True, "offload_params": True}),
                           dtype_name="bfloat16", quantized=False, layer_classes=LAYERS, on_gpu=True)
    d = ds["deepspeed_config"]
    assert ds["distributed_type"] == "DEEPSPEED" and d["zero_stage"] == 3
    assert d["offload_optimizer_device"] == "cpu" and d["offload_param_device"] == "cpu"
    assert d["zero3_save_16bit_model"] and d["zero3_init_flag"]
    # No GPU: accelerate's launcher starts the ranks (MULTI_GPU via torchrun), each trains on the
    # CPU with gloo, and the strategy comes from the run file.
    cpu = accelerate_config(dist(strategy="fsdp", num_processes=2), dtype_name="float32", quantized=False,
                            layer_classes=LAYERS, on_gpu=False)
    assert cpu["distributed_type"] == "MULTI_GPU" and cpu["mixed_precision"] == "no" and not cpu["use_cpu"]


def test_strategy_env_matches_accelerate_launchers_names():
    env = strategy_env(dist(strategy="fsdp", num_processes=2, fsdp={"cpu_offload": True, "state_dict_type": "full"}),
                       quantized=False, layer_classes=LAYERS, on_gpu=False)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_OFFLOAD_PARAMS"] == "true" and env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "LlamaDecoderLayer"
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "false" and env["FSDP_SYNC_MODULE_STATES"] == "false"
    ds = strategy_env(dist(strategy="deepspeed", num_processes=2, deepspeed={"zero_stage": 2,
                                                                           "offload_optimizer": True}),
                      quantized=True, layer_classes=[], on_gpu=True)
    assert ds["ACCELERATE_USE_DEEPSPEED"] == "true" and ds["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "2"
    assert ds["ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE"] == "cpu"
    assert ds["ACCELERATE_DEEPSPEED_ZERO3_INIT"] == "false"
    # accelerate's own plugin reads our variables as we mean them.
    import os
    from unittest import mock

    from accelerate.utils import FullyShardedDataParallelPlugin

    with mock.patch.dict(os.environ, env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)


def _cfg(tmp_path, model=CONFIGS / "smollm2-135m", **over) -> RunConfig:
    cfg = RunConfig.from_dict({"model": {"name_or_path": str(model)}, "output_dir": str(tmp_path / "run")})
    return cfg.with_overrides([f"{k.replace('__', '.')}={v}" for k, v in over.items()])


def test_preflight_refuses_what_cannot_shard(tmp_path):
    from engine.distributed.preflight import check_strategy

    two = {"train__distributed__num_processes": 2}
    check_strategy(_cfg(tmp_path, train__distributed__strategy="fsdp", **two), on_gpu=False)   # LoRA: fine
    with pytest.raises(ConfigError, match=r"train\.distributed\.strategy: BitFit saves its own tensors"):
        check_strategy(_cfg(tmp_path, method__name="bitfit", train__distributed__strategy="fsdp", **two),
                       on_gpu=True)
    check_strategy(_cfg(tmp_path, method__name="bitfit", train__distributed__strategy="ddp", **two), on_gpu=True)
    with pytest.raises(ConfigError, match=r"needs CUDA GPUs"):
        check_strategy(_cfg(tmp_path, method__name="qlora", train__distributed__strategy="fsdp", **two),
                       on_gpu=False)
    check_strategy(_cfg(tmp_path, method__name="qlora", train__distributed__strategy="fsdp", **two), on_gpu=True)
    with pytest.raises(ConfigError, match=r"model\.quantization: FSDP shards 4-bit bases"):
        check_strategy(_cfg(tmp_path, model__quantization="int8", train__distributed__strategy="fsdp", **two),
                       on_gpu=True)
    # DeepSpeed: accelerate never starts it on CPU processes (they fall back to plain DDP).
    with pytest.raises(ConfigError, match=r"DeepSpeed needs CUDA GPUs"):
        check_strategy(_cfg(tmp_path, train__distributed__strategy="deepspeed", **two), on_gpu=False)
    check_strategy(_cfg(tmp_path, train__distributed__strategy="deepspeed", **two), on_gpu=True, cluster=True)


def test_cli_refuses_before_starting_anything(tmp_path, capsys):
    from engine.cli import main

    run = tmp_path / "run.yaml"
    _cfg(tmp_path, method__name="bitfit").save(run)
    assert main(["launch", str(run), "--strategy", "fsdp", "--num-processes", "2"]) == 2
    assert "BitFit saves its own tensors" in capsys.readouterr().err
    assert not (tmp_path / "run" / "accelerate_config.yaml").exists()
    assert main(["launch", str(run), "--nodes", "0", "--gpus-per-node", "2", "--slurm", "--print"]) == 2
    assert "--nodes: must be ≥ 1" in capsys.readouterr().err


def test_train_refuses_a_multi_process_strategy_without_a_launcher(tiny_model_dir, tmp_path):
    from engine.events import ListSink
    from engine.training import train
    from tests.engine.test_train import tiny_config

    cfg = tiny_config(tiny_model_dir, tmp_path)
    cfg.train.distributed.strategy, cfg.train.distributed.num_processes = "fsdp", 2
    sink = ListSink()
    res = train(cfg, sinks=[sink])
    assert res.status == "failed" and "peft-studio launch" in res.error
    assert sink.of("failed")[0]["error"].startswith("train.distributed.strategy: fsdp runs as several processes")


def test_slurm_print_writes_a_script_bash_accepts(tmp_path, capsys):
    from engine.cli import main

    run = tmp_path / "run.yaml"
    _cfg(tmp_path).save(run)
    assert main(["launch", str(run), "--strategy", "fsdp", "--nodes", "2", "--gpus-per-node", "8", "--slurm",
                 "--print", "--partition", "gpu", "--time", "12:00:00"]) == 0
    out = capsys.readouterr()
    script = out.out
    assert script.startswith("#!/bin/bash") and "#SBATCH --nodes=2" in script
    assert "#SBATCH --gpus-per-node=8" in script and "#SBATCH --partition=gpu" in script
    assert '--machine_rank "$SLURM_NODEID"' in script and "srun --ntasks-per-node=1" in script
    run_dir = tmp_path / "run"
    assert f"RUN_DIR={run_dir}" in script and f"#SBATCH --output={run_dir}/slurm-%j.out" in script
    path = run_dir / "slurm.sbatch"
    assert path.read_text() == script
    subprocess.run(["bash", "-n", str(path)], check=True)
    written = RunConfig.load(run_dir / "run.yaml").train.distributed
    assert (written.strategy, written.num_machines, written.num_processes) == ("fsdp", 2, 16)
    acc = yaml.safe_load((run_dir / "accelerate_config.yaml").read_text())
    assert acc["distributed_type"] == "FSDP" and acc["num_machines"] == 2 and acc["num_processes"] == 16


def test_estimate_per_gpu_under_each_strategy():
    from engine.estimate import estimate
    from engine.estimate.gpus import GiB, parse_gpu
    from engine.estimate.memory import breakdown, plan
    from engine.estimate.sharding import Layout, layout_of

    cfg = RunConfig.from_dict({"model": {"name_or_path": str(CONFIGS / "llama-3-8b")}, "method": {"name": "lora"},
                               "data": {"max_length": 1024},
                               "train": {"batch_size": 1, "gradient_checkpointing": True}})
    p = plan(cfg, parse_gpu("80GB"))

    def per_gpu(**d):
        return breakdown(p, 1, 1024, layout_of(dist(**d)))

    one, ddp = per_gpu(), per_gpu(strategy="ddp", num_processes=4)
    fsdp = per_gpu(strategy="fsdp", num_processes=4)
    offload = per_gpu(strategy="fsdp", num_processes=4, fsdp={"cpu_offload": True})
    grad_op = per_gpu(strategy="fsdp", num_processes=4, fsdp={"sharding_strategy": "shard_grad_op"})
    zero2 = per_gpu(strategy="deepspeed", num_processes=4, deepspeed={"zero_stage": 2})
    zero3 = per_gpu(strategy="deepspeed", num_processes=4, deepspeed={"zero_stage": 3})
    zero3_off = per_gpu(strategy="deepspeed", num_processes=4,
                        deepspeed={"zero_stage": 3, "offload_params": True, "offload_optimizer": True})
    params = one["resident"]["parameters"]
    assert ddp["resident"]["parameters"] == params and ddp["device_total"] > one["device_total"]  # buckets, NCCL
    assert fsdp["resident"]["parameters"] == params // 4
    assert fsdp["resident"]["gradients"] == one["resident"]["gradients"] // 4
    assert fsdp["resident"]["optimizer_states"] == one["resident"]["optimizer_states"] // 4
    assert fsdp["device_total"] < one["device_total"] - 8 * GiB
    assert offload["resident"]["parameters"] == 0 and offload["cpu_offloaded"] > 0
    assert offload["device_total"] < fsdp["device_total"] < grad_op["device_total"]   # all gathered till backward
    assert zero2["resident"]["parameters"] > zero3["resident"]["parameters"] > 0
    assert zero3_off["resident"]["parameters"] == 0 and zero3_off["resident"]["optimizer_states"] == 0
    hybrid = breakdown(p, 1, 1024, layout_of(dist(strategy="fsdp", num_processes=16, num_machines=2,
                                                  fsdp={"sharding_strategy": "hybrid_shard"})))
    assert hybrid["resident"]["parameters"] == params // 8       # sharded inside a node of 8
    assert Layout("fsdp", 16, 8).label == "FSDP (hybrid, sharded over 8 per node)"
    # estimate() reports the configured layout per GPU.
    cfg.train.distributed = dist(strategy="fsdp", num_processes=4)
    e = estimate(cfg, "80GB")
    assert e.processes == 4 and e.layout == "FSDP" and e.device_total == fsdp["device_total"]
    assert e.resident == fsdp["resident"]
    assert any(n.startswith("per GPU: FSDP over 4 processes") for n in e.notes)


def test_estimate_says_which_gpus_would_fit_a_70b_qlora():
    from engine.estimate import estimate

    cfg = RunConfig.from_dict({"model": {"name_or_path": str(CONFIGS / "llama-3-70b")},
                               "method": {"name": "qlora", "r": 8, "target_modules": "all-linear"},
                               "data": {"max_length": 2048},
                               "train": {"batch_size": 1, "gradient_checkpointing": True}})
    e = estimate(cfg, "24GB")
    assert e.verdict == "exceeds"
    assert e.sharding_options and all(" × 24 GB: " in t and t.endswith(" GB each") for t in e.sharding_options)
    assert any(s.startswith("spread it over GPUs: ") for s in e.suggestions)
    for text in e.sharding_options:
        assert float(text.rsplit(": ", 1)[1].split(" GB")[0]) <= 24.0
    # The fewest GPUs first: with CPU offload two cards are enough; without, more are needed.
    assert e.sharding_options[0].startswith("FSDP (CPU offload) over 2 × 24 GB")
    assert e.sharding_options[-1].startswith("FSDP over ") and " over 2 " not in e.sharding_options[-1]


def test_a_sharded_4bit_base_is_stored_in_one_floating_dtype(tiny_model_dir):
    """FSDP-QLoRA: bnb_4bit_quant_storage = the compute dtype, and no k-bit preparation (its fp32
    norms would break FSDP's one dtype per unit). On the CPU the compute dtype is fp32."""
    pytest.importorskip("bitsandbytes")
    import torch

    from engine.methods import prepare_for_training
    from engine.models import check_bitsandbytes, load_model

    if check_bitsandbytes():
        pytest.skip(check_bitsandbytes())
    cfg = RunConfig.from_dict({"model": {"name_or_path": str(tiny_model_dir)},
                               "method": {"name": "qlora", "target_modules": ["q_proj", "v_proj"]}})
    plain = load_model(cfg.model, quantization="nf4", device="cpu")
    assert any(p.dtype == torch.uint8 for p in plain.parameters())
    sharded = load_model(cfg.model, quantization="nf4", device="cpu", sharded=True)
    model = prepare_for_training(sharded, cfg, quantized=True)
    assert {str(p.dtype) for p in model.parameters()} == {"torch.float32"}
