"""The run file: RunConfig = ModelConfig + DataConfig + MethodConfig + TrainConfig (+ output_dir).

Every field is a typed dataclass field whose ``metadata`` carries its help text (``help``) and,
where the set of values is closed, its ``choices``. The studio builds its forms from exactly
this metadata, the CLI's ``--set`` parses through it, and ``validate()`` checks against it, so a
new field appears everywhere at once.

Method fields are the method's own: ``method: {name: lora, r: 16}`` is parsed into the
dataclass the method registry declares for ``lora`` (``engine.methods``: each family module owns
its parameter class; importing them imports neither torch nor peft, so reading a run file stays
cheap). Field helpers and coercion live in ``engine.fields``, ConfigError in ``engine.errors``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from engine import atomic
from engine import fields as fieldlib
from engine.data import FORMATS
from engine.errors import ConfigError
from engine.fields import F, coerce_value, field_help
from engine.methods import MethodParams as MethodConfig
from engine.methods import params_class, validate_params
from engine.tasks import DPO_LOSSES, KTO_LOSSES, TASK_NAMES, get_task

__all__ = ["ConfigError", "DataConfig", "EvalConfig", "F", "MethodConfig", "ModelConfig", "PreferenceConfig",
           "RunConfig", "TrainConfig", "coerce_value", "field_help", "method_params_class"]


SECTIONS = ("model", "data", "method", "train", "eval")  # the run file's sections, in order
QUANTIZATIONS = [None, "nf4", "fp4", "int8"]
DTYPES = ["auto", "float32", "bfloat16", "float16"]
DATA_FORMATS = ["auto", *FORMATS]  # the data pipeline's formats (engine/data/formats.py)
OPTIMIZERS = ["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd"]
SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"]
ATTENTION = ["auto", "sdpa", "sdpa_varlen", "eager", "flash_attention_2"]
LOSS_IMPLS = ["auto", "chunked", "liger", "standard"]  # engine/training/loss.py
REPORT_TO = ["tensorboard", "mlflow", "wandb"]  # transformers' own tracker integrations (train.report_to)
METRIC_MODES = ["auto", "min", "max"]


@dataclass
class ModelConfig:
    name_or_path: str = F("demo", "The base model: `demo` (the bundled SmolLM2-135M-Instruct), a local folder "
                          "with config.json and weights, a Hugging Face hub id found in the local cache, "
                          "or a .gguf file.")
    dtype: str = F("auto", "Precision of the frozen weights. `auto` picks bfloat16 on GPUs that support it "
                   "and float32 on the CPU.", choices=DTYPES)
    quantization: str | None = F(None, "Load the frozen base in 4-bit (`nf4`, `fp4`) or 8-bit (`int8`) "
                                 "through bitsandbytes to save memory. `qlora` implies nf4.",
                                 choices=QUANTIZATIONS)
    double_quant: bool = F(True, "4-bit only: also quantize the quantization constants "
                           "(saves about 0.4 bits per parameter).", advanced=True)
    attn_implementation: str = F("auto", "Attention kernel. `auto`: flash-attention 2 on a GPU when the "
                                 "flash_attn package is installed; else, with packing, `sdpa_varlen` (PyTorch "
                                 "SDPA once per packed example, no work spent across examples); else the "
                                 "model's default (SDPA where supported).", choices=ATTENTION, advanced=True)
    upcast_embeddings: bool = F(False, "Quantized base only: keep the frozen embeddings and LM head in "
                                "float32 as peft's k-bit preparation makes them. Off: they stay in the "
                                "compute dtype (saves 2 bytes × vocabulary × hidden size per copy).",
                                advanced=True)
    trust_remote_code: bool = F(False, "Allow model code shipped with the checkpoint to run. Only for "
                                "sources you trust.", advanced=True)
    offline: bool = F(True, "Never contact the Hugging Face hub; hub ids must already be in the local "
                      "cache.", advanced=True)


@dataclass
class DataConfig:
    path: str = F("resources/demo/train.jsonl", "Training data: a .jsonl, .json, .csv, .tsv, .parquet, .arrow, "
                  ".txt or .md file, or a folder saved with datasets' save_to_disk. A relative path starts from "
                  "the run file's folder.")
    format: str = F("auto", "How records are read. `auto` detects alpaca (instruction/input/output), "
                    "sharegpt (conversations from/value), messages (role/content), prompt_completion "
                    "or text from the columns.", choices=DATA_FORMATS)
    columns: dict = F(default_factory=dict, help="Column mapping that overrides detection, e.g. "
                      "{prompt: question, completion: answer} or {messages: dialog}. Also: assistant (a column "
                      "appended as the final assistant answer, e.g. {assistant: chosen}), tools (the tools "
                      "schema) and label (train only the rows whose boolean label is true).", advanced=True)
    sources: list = F(default_factory=list, help="Several data files mixed by weight, e.g. [{path: chat.jsonl, "
                      "weight: 2}, {path: code.parquet, weight: 1}] (each may also set format and columns), "
                      "interleaved as datasets.interleave_datasets does. When set, data.path is not used.",
                      advanced=True)
    mix_stopping: str = F("first_exhausted", "With data.sources: stop the mix when the first source runs out "
                          "(`first_exhausted`, no example repeated) or when every source has been used once "
                          "(`all_exhausted`, smaller sources repeat).", choices=["first_exhausted", "all_exhausted"],
                          advanced=True)
    validation_path: str | None = F(None, "A separate validation file. When empty, "
                                    "`validation_split` of the training data is held out.", advanced=True)
    validation_split: float = F(0.1, "Fraction of the training data held out for evaluation "
                                "(0 disables evaluation).", minimum=0.0, maximum=0.5)
    max_length: int = F(512, "Maximum tokens per example; longer examples are truncated (or dropped, or "
                        "chunked: data.long_examples) and counted.", minimum=8, maximum=1_048_576)
    long_examples: str = F("truncate", "Examples longer than max_length: `truncate` them, `drop` them, or "
                           "`chunk` plain text into max_length windows that are all trained (continued "
                           "pretraining on long documents).", choices=["truncate", "drop", "chunk"])
    train_on_prompt: bool = F(False, "Compute the loss on prompt/user tokens too. Off: the loss falls "
                              "only on completions and assistant turns.")
    system_prompt: str | None = F(None, "A system message added to every example that has none.",
                                  advanced=True)
    replacements: dict = F(default_factory=dict, help="Values for template placeholders in the data, e.g. "
                           "{name: Ada} turns {{name}} into Ada. Unfilled placeholders are listed in the data "
                           "report.", advanced=True)
    reasoning: str = F("auto", "Reasoning in the data (reasoning_content, thinking parts): `auto` renders it "
                       "through the chat template's own thinking support and refuses a template without one; "
                       "`drop` trains the answers without their reasoning.", choices=["auto", "drop"],
                       advanced=True)
    sample_by: str = F("document", "Plain .txt/.md files: one example per file (`document`), per blank-line "
                       "separated paragraph, or per line.", choices=["document", "paragraph", "line"],
                       advanced=True)
    skip_bad_lines: bool = F(False, "Skip malformed lines/records (each is listed) instead of "
                             "stopping at the first one.", advanced=True)
    drop_long: bool = F(False, "Drop examples longer than max_length instead of truncating them (the same "
                        "as long_examples: drop).", advanced=True)
    max_examples: int = F(-1, "Use at most this many training examples (-1: all).", minimum=-1,
                          advanced=True)
    num_proc: int = F(0, "Processes that tokenize the data (0: one per CPU core for large data sets).",
                      minimum=0, advanced=True)
    cache: bool = F(True, "Reuse prepared data from the data cache, so that a rerun with the same inputs "
                    "skips straight to training (`peft-studio cache` lists and clears it). Off: prepare "
                    "again every time (the prepared files still live in the cache folder).", advanced=True)


# ---- train.distributed ---------------------------------------------------------------------------
# Where and how a run is spread over processes, GPUs and machines. The run file is the single
# source: `peft-studio launch` writes accelerate's config from these fields, and a run started with
# plain `accelerate launch -m engine train run.yaml` reads them too (engine.distributed.runtime turns
# them into accelerate's environment before the Trainer builds its Accelerator). Each strategy has
# its own typed section (fsdp, deepspeed), read only when its strategy is chosen; terms are
# accelerate's and PyTorch's (FULL_SHARD, ZeRO stages).

STRATEGIES = ["single", "ddp", "fsdp", "deepspeed"]
SHARDING_STRATEGIES = ["full_shard", "shard_grad_op", "hybrid_shard", "hybrid_shard_zero2", "no_shard"]
STATE_DICT_TYPES = ["sharded", "full"]
FSDP_VERSIONS = ["auto", "1", "2"]
ZERO_STAGES = [2, 3]
SHARDED = ("fsdp", "deepspeed")     # strategies that split parameters/gradients/optimizer state


@dataclass
class FsdpConfig:
    """PyTorch Fully Sharded Data Parallel, through accelerate's FSDP plugin."""

    sharding_strategy: str = F("full_shard", "What each GPU keeps. `full_shard`: a 1/N slice of the "
                               "parameters, gradients and optimizer state (ZeRO-3); `shard_grad_op`: "
                               "gradients and optimizer state only, parameters stay whole after the "
                               "forward (ZeRO-2); `hybrid_shard`: full_shard inside each machine, "
                               "replicated across machines (less traffic between nodes); "
                               "`hybrid_shard_zero2`: the same with shard_grad_op inside each machine; "
                               "`no_shard`: plain data parallel.", choices=SHARDING_STRATEGIES)
    cpu_offload: bool = F(False, "Keep the sharded parameters (and their gradients and optimizer "
                          "state) in CPU memory, moving each layer to the GPU only while it runs: the "
                          "least GPU memory, much slower steps.")
    auto_wrap: str = F("auto", "Decoder-layer class names to shard one by one, comma-separated. "
                       "`auto`: the model's own (`_no_split_modules`, e.g. LlamaDecoderLayer), plus "
                       "each trainable adapter layer (peft's FSDP wrap policy).", advanced=True)
    state_dict_type: str = F("sharded", "How checkpoints store the model for resuming: `sharded` "
                             "(each rank writes its slice; fast, no gathering) or `full` (gathered "
                             "on rank 0). Either way rank 0 also writes a standard peft adapter.",
                             choices=STATE_DICT_TYPES, advanced=True)
    version: str = F("auto", "FSDP implementation. `2`: per-parameter sharding (fully_shard), "
                     "transformers' default; `1`: flat parameters, the path bitsandbytes documents "
                     "for QLoRA (4-bit weights stored in the compute dtype). `auto`: 1 for a "
                     "quantized base, else 2.", choices=FSDP_VERSIONS, advanced=True)
    cpu_ram_efficient_loading: bool = F(True, "On GPUs: only rank 0 reads the weights into CPU memory; "
                                        "the others start empty and receive their shards (a 70B model "
                                        "is read once, not once per GPU).", advanced=True)


@dataclass
class DeepSpeedConfig:
    """DeepSpeed ZeRO, through accelerate's DeepSpeed plugin (needs the `deepspeed` package)."""

    zero_stage: int = F(2, "ZeRO stage. 2: optimizer state and gradients are partitioned over the "
                        "GPUs, parameters are replicated; 3: parameters are partitioned too.",
                        choices=ZERO_STAGES)
    offload_optimizer: bool = F(False, "Keep the partitioned optimizer state (and its update step) "
                                "in CPU memory (ZeRO-Offload).")
    offload_params: bool = F(False, "ZeRO-3 only: keep the partitioned parameters in CPU memory "
                             "between uses (ZeRO-Infinity's CPU offload).")


@dataclass
class DistributedConfig:
    """Where a run trains: one process, or several with a strategy (DDP, FSDP, DeepSpeed ZeRO)."""

    strategy: str = F("single", "`single`: one process (one GPU, or the CPU). `ddp`: one process per "
                      "GPU, each with a whole copy of the model (data parallel). `fsdp`: the model, "
                      "gradients and optimizer state are sharded over the GPUs (PyTorch FSDP), for "
                      "models one GPU cannot hold. `deepspeed`: DeepSpeed ZeRO stage 2/3.",
                      choices=STRATEGIES)
    num_processes: int = F(1, "Processes in all, over every machine: one per GPU. The effective batch "
                           "is batch_size × grad_accum × num_processes.", minimum=1)
    num_machines: int = F(1, "Machines (nodes) taking part; num_processes is split evenly over them.",
                          minimum=1)
    gpu_ids: str = F("all", "This machine's GPUs to use (CUDA_VISIBLE_DEVICES), e.g. `0,1`; `all`: "
                     "every one.", advanced=True)
    main_process_port: int = F(29500, "TCP port of the rendezvous on the first machine.", minimum=1,
                               maximum=65535, advanced=True)
    fsdp: FsdpConfig = field(default_factory=FsdpConfig, metadata={"help": "FSDP options "
                                                                  "(strategy: fsdp).", "advanced": False})
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig,
                                       metadata={"help": "DeepSpeed options (strategy: deepspeed).",
                                                 "advanced": False})

    @property
    def is_multi_process(self) -> bool:
        return self.strategy != "single"

    @property
    def shards(self) -> bool:
        """Parameters, gradients or optimizer state are split over processes (FSDP or ZeRO)."""
        return self.strategy in SHARDED and self.num_processes > 1 and not (
            self.strategy == "fsdp" and self.fsdp.sharding_strategy == "no_shard")

    @property
    def processes_per_machine(self) -> int:
        return max(1, self.num_processes // max(1, self.num_machines))


def validate_distributed(d: DistributedConfig, path: str = "train.distributed") -> None:
    """Cross-field checks (each field's own choices and bounds are checked by RunConfig.validate).
    Raises ConfigError naming the field."""
    if d.strategy == "single":
        if d.num_processes != 1:
            raise ConfigError(f"{path}.num_processes", "must be 1 with strategy single; choose ddp, fsdp or "
                              "deepspeed to use several processes", d.num_processes)
        if d.num_machines != 1:
            raise ConfigError(f"{path}.num_machines", "must be 1 with strategy single", d.num_machines)
    if d.num_processes % d.num_machines:
        raise ConfigError(f"{path}.num_processes", f"must be a multiple of num_machines ({d.num_machines}): "
                          "every machine runs the same number of processes", d.num_processes)
    if d.strategy == "fsdp" and d.fsdp.sharding_strategy.startswith("hybrid") and d.num_machines < 2:
        raise ConfigError(f"{path}.fsdp.sharding_strategy", "hybrid sharding replicates across machines "
                          "and needs num_machines ≥ 2; use full_shard on one machine",
                          d.fsdp.sharding_strategy)
    if d.strategy == "deepspeed" and d.deepspeed.offload_params and d.deepspeed.zero_stage != 3:
        raise ConfigError(f"{path}.deepspeed.offload_params", "parameter offload needs zero_stage 3",
                          d.deepspeed.offload_params)
    gpu_ids = d.gpu_ids.strip()
    if gpu_ids != "all" and not all(p.strip().isdigit() for p in gpu_ids.split(",")):
        raise ConfigError(f"{path}.gpu_ids", "must be `all` or GPU numbers separated by commas, e.g. 0,1",
                          d.gpu_ids)


def fsdp_version(d: DistributedConfig, quantized: bool) -> int:
    """The FSDP implementation a run uses: the configured one, or for `auto` FSDP1 on a quantized
    base (bitsandbytes' documented FSDP-QLoRA path; FSDP2's all-gather loses the packed 4-bit
    weights' quantization state, bitsandbytes issue #1945) and FSDP2 otherwise."""
    if d.fsdp.version != "auto":
        return int(d.fsdp.version)
    return 1 if quantized else 2


# ---- train.preference ----------------------------------------------------------------------------
# Options of the preference tasks (train.task: dpo, orpo, kto, simpo), named as TRL names them
# (DPOConfig, KTOConfig, ORPOConfig, CPOConfig); engine/training/preference.py hands them to TRL.

PREFERENCE_LOSSES = ["default", *DPO_LOSSES, *KTO_LOSSES]


@dataclass
class PreferenceConfig:
    """Preference tuning (train.task dpo, orpo, kto or simpo), through TRL's trainers."""

    # TRL config keys people copy into a run file that the project takes from elsewhere.
    RETIRED: ClassVar[dict[str, str]] = {
        "max_prompt_length": "TRL 1.16 removed it from DPOConfig and KTOConfig; data.max_length bounds the prompt "
                             "and the answer together (the end is cut), so set data.max_length",
        "max_completion_length": "data.max_length bounds the prompt and the answer together; set data.max_length",
        "max_length": "the sequence length is data.max_length (shared with supervised runs); set it there",
        "ref_model": "the reference is the base with the adapter disabled, never a second copy of the weights, or "
                     "the starting adapter of a run that continues one (method.from_adapter; docs/preference.md)",
        "ref_adapter_name": "to start from an SFT adapter and use it as the reference, set method.from_adapter "
                            "to it (docs/preference.md, \"Starting from an SFT adapter\")",
    }

    beta: float = F(0.1, "β. DPO and KTO: how strongly the model is held to the reference (higher: closer to "
                    "it; 0.1 is TRL's default, 0.01–0.5 is common). ORPO: λ, the weight of the odds-ratio "
                    "term beside the supervised loss. SimPO: the scale of the length-normalised reward (the "
                    "paper uses 2–2.5 with simpo_gamma 0.5–1.5).", minimum=0.0,
                    tasks=["dpo", "orpo", "kto", "simpo"])
    loss_type: str = F("default", "The loss, by TRL's name. `default`: sigmoid for DPO (the paper's), kto for "
                       "KTO. DPO also offers hinge, ipo, robust (label_smoothing = the share of flipped labels), "
                       "exo_pair, nca_pair, bco_pair, sppo_hard, aot, aot_unpaired, apo_zero, apo_down, discopop, "
                       "sft and sigmoid_norm; KTO apo_zero_unpaired.", choices=PREFERENCE_LOSSES,
                       tasks=["dpo", "kto"])
    label_smoothing: float = F(0.0, "The share of preference labels assumed wrong (conservative DPO, robust "
                               "DPO, SimPO's smoothed loss; EXO's ε); 0: trust every label. Below 0.5.",
                               minimum=0.0, maximum=0.49,
                               tasks=["dpo", "simpo"])
    simpo_gamma: float = F(0.5, "SimPO's target reward margin γ: the chosen answer's reward should exceed "
                           "the rejected one's by at least this much.", minimum=0.0, tasks=["simpo"])
    cpo_alpha: float = F(0.0, "SimPO: weight of a supervised (NLL) loss on the chosen answers added to the "
                         "SimPO loss (CPO-SimPO); 0: pure SimPO.", minimum=0.0, tasks=["simpo"])
    rpo_alpha: float = F(0.0, "DPO: weight α of a supervised (NLL per token) loss on the chosen answers added to the "
                         "DPO loss (RPO, arXiv 2404.19733, which uses 1.0; TRL's loss_type [sigmoid, sft] with "
                         "loss_weights [1, α]). It keeps the chosen answers likely while DPO pushes the rejected "
                         "ones down: where both answers share most of their words, pure DPO lowers them both and "
                         "greedy answers degenerate into repetition. 0: pure DPO.", minimum=0.0, tasks=["dpo"])
    desirable_weight: float = F(1.0, "KTO: weight of the losses of answers labelled desirable. With unequal "
                                "counts, set desirable_weight × desirable count ≈ undesirable_weight × "
                                "undesirable count (the paper keeps the ratio within 1 to 4/3).", minimum=0.0,
                                tasks=["kto"])
    undesirable_weight: float = F(1.0, "KTO: weight of the losses of answers labelled undesirable.",
                                  minimum=0.0, tasks=["kto"])
    precompute_ref_log_probs: bool = F(False, "DPO and KTO: compute the reference model's log-probabilities "
                                       "for the whole data set once, before the first step (one pass of "
                                       "forward-only compute), instead of at every step. Methods that "
                                       "change the base's own weights (BitFit, selective, full) always "
                                       "do: their reference cannot be had by disabling an adapter.",
                                       advanced=True, tasks=["dpo", "kto"])


def validate_preference(cfg) -> None:
    """Cross-field checks of train.task and train.preference (a field's own bounds and choices are
    checked by RunConfig.validate). Raises ConfigError naming the field."""
    t = cfg.train
    task = get_task(t.task)
    if not task.is_preference:
        return
    p = t.preference
    if p.loss_type != "default" and p.loss_type not in task.loss_types:
        raise ConfigError("train.preference.loss_type", f"is not a loss of {task.title}", p.loss_type,
                          choices=["default", *task.loss_types])
    if t.task == "kto" and p.loss_type != "apo_zero_unpaired" and t.batch_size < 2:
        raise ConfigError("train.batch_size", "KTO estimates its KL term from the other answers of a batch, so "
                          "it needs at least 2 examples per batch", t.batch_size)
    if p.loss_type == "exo_pair" and p.label_smoothing <= 0:
        raise ConfigError("train.preference.label_smoothing", "the exo_pair loss needs a label_smoothing above "
                          "0 (the EXO paper suggests 1e-3)", p.label_smoothing)



@dataclass
class EarlyStoppingConfig:
    """Early stopping on an evaluation metric (engine.training.watch.EarlyStopping)."""

    patience: int = F(0, "Evaluations in a row without improvement after which the run stops (0: never "
                      "stop early).", minimum=0)
    metric: str = F("eval_loss", "The metric watched: `eval_loss`, `eval_token_f1`, `eval_exact_match`, "
                    "`eval_<name>` of the user metric (eval.metric), or any other metric the evaluation "
                    "reports; the `eval_` prefix may be left out.")
    min_delta: float = F(0.0, "The smallest change that counts as an improvement (in the metric's own "
                         "unit).", minimum=0.0)
    mode: str = F("auto", "Whether lower (`min`) or higher (`max`) is better; `auto`: lower for losses, "
                  "NLL and perplexity, higher for everything else.", choices=METRIC_MODES, advanced=True)


@dataclass
class DivergenceConfig:
    """The divergence guard (engine.training.watch.DivergenceGuard)."""

    enabled: bool = F(True, "Stop the run when the loss or the gradient norm is NaN/Inf, or the loss stays "
                      "above factor × its running minimum for `steps` logged steps; the last good weights "
                      "are saved, not the diverged ones.")
    factor: float = F(4.0, "k: a logged loss above k × the lowest loss so far counts as diverging.",
                      minimum=1.0, advanced=True)
    steps: int = F(3, "m: logged steps in a row above the limit before the run stops.", minimum=1,
                   advanced=True)


@dataclass
class TrainConfig:
    task: str = F("sft", "What the run teaches. `sft`: the answers in the data (supervised fine-tuning). "
                  "Preference tuning through TRL: `dpo`, `orpo` and `simpo` learn from chosen/rejected pairs, "
                  "`kto` from single answers labelled good or bad (train.preference holds their options).",
                  choices=TASK_NAMES)
    epochs: float = F(1.0, "Passes over the training data (ignored when max_steps > 0).", minimum=0.0)
    max_steps: int = F(-1, "Stop after this many optimizer steps (-1: run the full epochs).", minimum=-1)
    batch_size: int = F(4, "Examples per device per forward pass (with packing they are concatenated into "
                        "one padding-free row).", minimum=1)
    grad_accum: int = F(1, "Forward passes accumulated per optimizer step; the effective batch is "
                        "batch_size × grad_accum × GPUs.", minimum=1)
    lr: float = F(2e-4, "Peak learning rate.", minimum=0.0)
    scheduler: str = F("linear", "Learning-rate schedule after warm-up.", choices=SCHEDULERS)
    warmup_ratio: float = F(0.0, "Fraction of the run's optimizer steps spent warming the learning rate up "
                            "from 0 (rounded up to whole steps).", minimum=0.0, maximum=1.0)
    weight_decay: float = F(0.0, "Decoupled weight decay.", minimum=0.0)
    max_grad_norm: float = F(1.0, "Clip gradients to this norm (0 disables clipping).", minimum=0.0,
                             advanced=True)
    optimizer: str = F("adamw_torch", "Optimizer. The 8-bit ones (bitsandbytes) keep optimizer state "
                       "in 8 bits; paged moves it to CPU memory under pressure.", choices=OPTIMIZERS)
    seed: int = F(42, "Random seed for data order, initialisation and dropout.")
    gradient_checkpointing: bool = F(False, "Recompute activations in the backward pass: much less "
                                     "memory, about 30% slower.")
    packing: bool = F(True, "Padding-free batches: the batch's examples are concatenated into one row "
                      "with no attention across examples, so no compute is spent on padding "
                      "(prompt-based methods turn it off).")
    group_by_length: bool = F(True, "Without packing: batch examples of similar length together to cut "
                              "padding (order is still seeded and reproducible).", advanced=True)
    eval_steps: int = F(0, "Evaluate every N steps (0: at the end only, when there is validation data).",
                        minimum=0)
    save_steps: int = F(0, "Save a checkpoint every N steps (0: no checkpoints; the adapter is saved at the "
                        "end either way, but only a checkpoint can be resumed).", minimum=0)
    save_total_limit: int = F(2, "Keep only the last K checkpoints.", minimum=1, advanced=True)
    logging_steps: int = F(1, "Report a step event every N steps (and after the first).", minimum=1,
                           advanced=True)
    resume_from: str | None = F(None, "A checkpoint folder to resume from, or `latest` for the newest "
                                "checkpoint in output_dir.", advanced=True)
    loraplus_lr_ratio: float = F(0.0, "LoRA+: the learning rate of LoRA B matrices is this times lr "
                                 "(0 disables; 16 is the paper's suggestion).", minimum=0.0, advanced=True)
    dataloader_workers: int = F(0, "Background processes that prepare batches.", minimum=0, advanced=True)
    loss_impl: str = F("auto", "How the loss is computed. `chunked`: from the hidden states, only at "
                       "labelled positions, a chunk of tokens at a time, so the full batch × sequence × "
                       "vocabulary logits never exist; `liger`: Liger's fused kernel (CUDA, when "
                       "liger_kernel is installed); `standard`: the model's own loss; `auto`: liger when "
                       "available, else chunked.", choices=LOSS_IMPLS, advanced=True)
    loss_chunk_tokens: int = F(0, "Tokens per chunk of the chunked loss (0: about 256 MB of fp32 logits "
                               "a chunk).", minimum=0, advanced=True)
    torch_compile: bool = F(False, "Compile the model with torch.compile: faster steps on GPUs after a "
                            "slow first step (and a recompile when batch shapes change).", advanced=True)
    distributed: DistributedConfig = F(default_factory=DistributedConfig, help="Where the run trains: one "
                                       "process, or several with DDP, FSDP or DeepSpeed (engine.distributed).")
    report_to: list[str] = F(default_factory=list, help="Experiment trackers, through transformers' own "
                             "integrations: `tensorboard` (event files in the run folder's tensorboard/), "
                             "`mlflow` (a local file store in the run folder's mlruns/ unless "
                             "MLFLOW_TRACKING_URI is set), `wandb` (offline, in the run folder, unless "
                             "WANDB_MODE is set). Empty: none.")
    early_stopping: EarlyStoppingConfig = F(default_factory=lambda: EarlyStoppingConfig(), help="Stop when an "
                                            "evaluation metric stops improving; the same metric picks the "
                                            "best checkpoint (train.keep_best).")
    keep_best: bool = F(True, "Keep the best state by train.early_stopping.metric in the run's best/ folder "
                        "(export and the playground offer it beside final). Needs evaluation during the run "
                        "(train.eval_steps > 0 and validation data).")
    divergence: DivergenceConfig = F(default_factory=lambda: DivergenceConfig(), help="The divergence guard: "
                                     "stop a run whose loss has blown up and save its last good state.")
    preference: PreferenceConfig = F(default_factory=PreferenceConfig, help="Options of the preference tasks "
                                     "(train.task dpo, orpo, kto, simpo), in TRL's terms.")




@dataclass
class EvalConfig:
    """What is measured besides the eval loss: sample answers at every evaluation, task metrics, and
    the forgetting check (engine.evals)."""

    prompts: list[str] | str | None = F(None, "Prompts answered at every evaluation: a list of prompts, or "
                                        "a file (.jsonl with `messages` or `prompt`, and optionally "
                                        "`reference`; .txt: one prompt a line). Empty: the first held-out "
                                        "examples, with their answers as references.")
    samples: int = F(4, "How many prompts are answered at every evaluation (the first of eval.prompts, or of "
                     "the held-out examples; 0: none).", minimum=0)
    max_new_tokens: int = F(48, "Longest sample answer, in tokens (greedy decoding).", minimum=1,
                            maximum=4096)
    metric: str | None = F(None, "A metric of each sample answer, averaged: `module:function` called with "
                           "(answer, reference) or (answer), e.g. `engine.data.demo:persona_score`, or a Python "
                           "expression over `answer` and `reference`, e.g. `len(answer.split())`. "
                           "Reported as eval_<function name> (eval_metric for an expression).")
    forgetting: bool = F(True, "Measure what the run cost the base model: the NLL of bundled general text "
                         "and the greedy answers to bundled general prompts, base vs tuned.")
    forgetting_passages: int = F(64, "General-text passages scored (of 320 bundled; 0: skip the NLL).",
                                 minimum=0, maximum=320, advanced=True)
    forgetting_prompts: int = F(16, "General prompts answered (of 48 bundled; 0: skip the answers).",
                                minimum=0, maximum=48, advanced=True)
    forgetting_max_new_tokens: int = F(32, "Longest answer to a general prompt, in tokens.", minimum=1,
                                       maximum=1024, advanced=True)


@dataclass
class RunConfig:
    # The folder of the run file this was loaded from (None when built in code); not a field.
    source_dir: ClassVar[str | None] = None

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=lambda: method_params_class("lora")())
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = F("runs/my-run", "Folder for this run: resolved config, events, checkpoints and "
                        "the final adapter.")

    # ---- dict / YAML round trip -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "model": fieldlib.to_dict(self.model),
            "data": fieldlib.to_dict(self.data),
            "method": fieldlib.to_dict(self.method, first="name"),  # name first reads better in YAML
            "train": fieldlib.to_dict(self.train),
            "eval": fieldlib.to_dict(self.eval),
            "output_dir": self.output_dir,
        }

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "") -> RunConfig:
        d = dict(d or {})
        if not isinstance(d, dict):
            raise ConfigError("", f"{source or 'run file'} must be a mapping of sections")
        sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig}
        allowed = [*sections, "method", "output_dir"]
        for key in d:
            if key not in allowed:
                raise ConfigError(key, "unknown section", choices=allowed)
        kwargs: dict[str, Any] = {}
        for name, klass in sections.items():
            kwargs[name] = fieldlib.from_dict(klass, d.get(name) or {}, name)
        mdict = dict(d.get("method") or {})
        if not isinstance(mdict, dict):
            raise ConfigError("method", "must be a mapping like {name: lora, r: 16}", mdict)
        mname = mdict.pop("name", "lora")
        mklass = method_params_class(mname, path="method.name")
        kwargs["method"] = fieldlib.from_dict(mklass, mdict, "method")
        if "output_dir" in d:
            kwargs["output_dir"] = "" if d["output_dir"] is None else str(d["output_dir"])
        return cls(**kwargs)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_yaml(cls, text: str, source: str = "run file") -> RunConfig:
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError("", f"{source}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
        if d is not None and not isinstance(d, dict):
            raise ConfigError("", f"{source}: must be a mapping with model/data/method/train sections")
        return cls.from_dict(d, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunConfig:
        p = Path(path)
        if not p.exists():
            raise ConfigError("", f"run file {p} does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError("", f"run file {p} is not UTF-8 text (byte {e.start})") from None
        cfg = cls.from_yaml(text, str(p))
        cfg.resolve_paths(p.resolve().parent)
        return cfg

    def resolve_paths(self, base: str | os.PathLike) -> RunConfig:
        """Make the data paths (and method.from_adapter) absolute from ``base`` (the run file's folder), as a run file means
        them, and record ``base`` in ``source_dir``. A relative path that does not exist there but
        does from the working folder or the repository (the bundled demo data) is left as it is.
        Done once, at load, so every verb (train, estimate, export, compare, data) agrees."""
        base = Path(base)
        self.source_dir = str(base)
        d = self.data
        d.path = _from_base(base, d.path)
        d.validation_path = _from_base(base, d.validation_path)
        d.sources = [{**s, "path": _from_base(base, s.get("path"))} if isinstance(s, dict) else _from_base(base, s)
                     for s in d.sources]
        self.method.from_adapter = _from_base(base, self.method.from_adapter)
        return self

    def save(self, path: str | os.PathLike) -> None:
        atomic.write_text(Path(path), self.to_yaml())

    # ---- overrides --------------------------------------------------------------------------
    def with_overrides(self, items: list[str]) -> RunConfig:
        """Apply ``key=value`` overrides such as ``train.lr=1e-4`` or ``method.name=dora``."""
        d = self.to_dict()
        for item in items:
            if "=" not in item:
                raise ConfigError(item, "an override must look like section.field=value, e.g. train.lr=1e-4")
            key, raw = item.split("=", 1)
            key = key.strip()
            value = yaml.safe_load(raw) if raw.strip() else None
            parts = key.split(".")
            if parts[0] == "output_dir" and len(parts) == 1:
                d["output_dir"] = value
                continue
            if len(parts) < 2 or parts[0] not in SECTIONS:
                raise ConfigError(key, "unknown field; use section.field",
                                  choices=[f"{s}.*" for s in SECTIONS] + ["output_dir"])
            if parts == ["method", "name"] and value != d["method"].get("name"):
                # A new method starts from its own defaults (the adapter it continues stays).
                d["method"] = {"name": value, "from_adapter": d["method"].get("from_adapter")}
                continue
            target = d[parts[0]]
            for i, part in enumerate(parts[1:-1], start=1):   # a nested section: train.distributed.strategy
                if not isinstance(target.get(part), dict):
                    raise ConfigError(".".join(parts[:i + 1]), "is not a section with fields")
                target = target[part]
            target[parts[-1]] = value
        out = RunConfig.from_dict(d, "overrides")
        out.source_dir = self.source_dir
        return out

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> RunConfig:
        """Check every field; raise ConfigError naming the first bad one. Returns self."""
        for section in SECTIONS:
            fieldlib.validate(getattr(self, section), section)
        if not self.output_dir or not str(self.output_dir).strip():
            raise ConfigError("output_dir", "must name a folder")
        t = self.train
        if t.max_steps <= 0 and t.epochs <= 0:
            raise ConfigError("train.epochs", "must be > 0 when train.max_steps is -1", t.epochs)
        if t.max_steps == 0:
            raise ConfigError("train.max_steps", "must be -1 (use epochs) or a positive number", 0)
        validate_distributed(t.distributed)
        for i, name in enumerate(t.report_to):
            if name not in REPORT_TO:
                raise ConfigError(f"train.report_to[{i}]", "is not a tracker PEFT Studio knows", name,
                                  choices=REPORT_TO)
        validate_preference(self)
        validate_params(self)
        return self

    def errors(self) -> list[ConfigError]:
        """All problems at once (the GUI marks every bad field), in field order."""
        out: list[ConfigError] = []
        for section in SECTIONS:
            out.extend(fieldlib.errors(getattr(self, section), section))
        if not out:
            try:
                self.validate()
            except ConfigError as e:
                out.append(e)
        return out


# ---- helpers --------------------------------------------------------------------------------

_REPO_ROOT = Path(__file__).resolve().parents[1]


def _from_base(base: Path, path):
    """``path`` made absolute from ``base`` (see RunConfig.resolve_paths)."""
    if path is None or not str(path).strip():
        return path
    p = Path(str(path)).expanduser()
    if p.is_absolute():
        return str(p)
    there = base / p
    if not there.exists() and ((Path.cwd() / p).exists() or (_REPO_ROOT / p).exists()):
        return str(path)  # e.g. the default resources/demo/... from a run file elsewhere
    return str(there)


def method_params_class(name: str, path: str = "method.name") -> type[MethodConfig]:
    """The parameter dataclass of method ``name``; ConfigError (naming ``path``) when unknown."""
    return params_class(name, path)
