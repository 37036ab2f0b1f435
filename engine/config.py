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
from typing import Any

import yaml

from engine import atomic
from engine import fields as fieldlib
from engine.data import FORMATS
from engine.errors import ConfigError
from engine.fields import F, coerce_value, field_help
from engine.methods import MethodParams as MethodConfig
from engine.methods import params_class, validate_params

__all__ = ["ConfigError", "DataConfig", "F", "MethodConfig", "ModelConfig", "RunConfig", "TrainConfig",
           "coerce_value", "field_help", "method_params_class"]


QUANTIZATIONS = [None, "nf4", "fp4", "int8"]
DTYPES = ["auto", "float32", "bfloat16", "float16"]
DATA_FORMATS = ["auto", *FORMATS]  # the data pipeline's formats (engine/data/formats.py)
OPTIMIZERS = ["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd"]
SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"]
ATTENTION = ["auto", "sdpa", "sdpa_varlen", "eager", "flash_attention_2"]
LOSS_IMPLS = ["auto", "chunked", "liger", "standard"]  # engine/training/loss.py


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
    path: str = F("resources/demo/train.jsonl", "Training data: a .jsonl, .json, .csv, .parquet or "
                  ".arrow file, or a folder saved with datasets' save_to_disk.")
    format: str = F("auto", "How records are read. `auto` detects alpaca (instruction/input/output), "
                    "sharegpt (conversations from/value), messages (role/content), prompt_completion "
                    "or text from the columns.", choices=DATA_FORMATS)
    columns: dict = F(default_factory=dict, help="Column mapping that overrides detection, e.g. "
                      "{prompt: question, completion: answer} or {messages: dialog}.", advanced=True)
    validation_path: str | None = F(None, "A separate validation file. When empty, "
                                    "`validation_split` of the training data is held out.", advanced=True)
    validation_split: float = F(0.1, "Fraction of the training data held out for evaluation "
                                "(0 disables evaluation).", minimum=0.0, maximum=0.5)
    max_length: int = F(512, "Maximum tokens per example; longer examples are truncated and counted.",
                        minimum=8, maximum=1_048_576)
    train_on_prompt: bool = F(False, "Compute the loss on prompt/user tokens too. Off: the loss falls "
                              "only on completions and assistant turns.")
    system_prompt: str | None = F(None, "A system message added to every example that has none.",
                                  advanced=True)
    skip_bad_lines: bool = F(False, "Skip malformed lines/records (and report how many) instead of "
                             "stopping at the first one.", advanced=True)
    drop_long: bool = F(False, "Drop examples longer than max_length instead of truncating them.",
                        advanced=True)
    max_examples: int = F(-1, "Use at most this many training examples (-1: all).", minimum=-1,
                          advanced=True)


@dataclass
class TrainConfig:
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


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=lambda: method_params_class("lora")())
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str = F("runs/my-run", "Folder for this run: resolved config, events, checkpoints and "
                        "the final adapter.")

    # ---- dict / YAML round trip -------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "model": fieldlib.to_dict(self.model),
            "data": fieldlib.to_dict(self.data),
            "method": fieldlib.to_dict(self.method, first="name"),  # name first reads better in YAML
            "train": fieldlib.to_dict(self.train),
            "output_dir": self.output_dir,
        }

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "") -> RunConfig:
        d = dict(d or {})
        if not isinstance(d, dict):
            raise ConfigError("", f"{source or 'run file'} must be a mapping of sections")
        sections = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}
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
        return cls.from_yaml(text, str(p))

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
            if len(parts) != 2 or parts[0] not in ("model", "data", "method", "train"):
                raise ConfigError(key, "unknown field; use section.field",
                                  choices=["model.*", "data.*", "method.*", "train.*", "output_dir"])
            if parts == ["method", "name"] and value != d["method"].get("name"):
                d["method"] = {"name": value}  # a new method starts from its own defaults
                continue
            d[parts[0]][parts[1]] = value
        return RunConfig.from_dict(d, "overrides")

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> RunConfig:
        """Check every field; raise ConfigError naming the first bad one. Returns self."""
        for section in ("model", "data", "method", "train"):
            fieldlib.validate(getattr(self, section), section)
        if not self.output_dir or not str(self.output_dir).strip():
            raise ConfigError("output_dir", "must name a folder")
        t = self.train
        if t.max_steps <= 0 and t.epochs <= 0:
            raise ConfigError("train.epochs", "must be > 0 when train.max_steps is -1", t.epochs)
        if t.max_steps == 0:
            raise ConfigError("train.max_steps", "must be -1 (use epochs) or a positive number", 0)
        validate_params(self)
        return self

    def errors(self) -> list[ConfigError]:
        """All problems at once (the GUI marks every bad field), in field order."""
        out: list[ConfigError] = []
        for section in ("model", "data", "method", "train"):
            out.extend(fieldlib.errors(getattr(self, section), section))
        if not out:
            try:
                self.validate()
            except ConfigError as e:
                out.append(e)
        return out


# ---- helpers --------------------------------------------------------------------------------

def method_params_class(name: str, path: str = "method.name") -> type[MethodConfig]:
    """The parameter dataclass of method ``name``; ConfigError (naming ``path``) when unknown."""
    return params_class(name, path)
