"""The run file: RunConfig = ModelConfig + DataConfig + MethodConfig + TrainConfig (+ output_dir).

Every field is a typed dataclass field whose ``metadata`` carries its help text (``help``) and,
where the set of values is closed, its ``choices``. The studio builds its forms from exactly
this metadata, the CLI's ``--set`` parses through it, and ``validate()`` checks against it, so a
new field appears everywhere at once.

Method fields are the method's own: ``method: {name: lora, r: 16}`` is parsed into the
dataclass the method registry declares for ``lora``. Method parameter classes live in
``engine/methods/params.py`` so that reading a run file never imports torch or peft.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from engine.distributed.config import DistributedConfig, validate_distributed
from engine.errors import ConfigError  # noqa: F401  (re-exported: most of the engine imports it from here)
from engine.fields import F  # noqa: F401  (re-exported: method parameter classes import it from here)

QUANTIZATIONS = [None, "nf4", "fp4", "int8"]
DTYPES = ["auto", "float32", "bfloat16", "float16"]
DATA_FORMATS = ["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text"]
OPTIMIZERS = ["adamw_torch", "adamw_8bit", "paged_adamw_8bit", "adafactor", "sgd"]
SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_min_lr"]
ATTENTION = ["auto", "sdpa", "sdpa_varlen", "eager", "flash_attention_2"]
LOSS_IMPLS = ["auto", "chunked", "liger", "standard"]  # engine/loss.py


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
class MethodConfig:
    """Base of every method's parameters. Subclasses add the method's own fields."""

    name: str = F("lora", "The fine-tuning method.")


@dataclass
class TrainConfig:
    epochs: float = F(1.0, "Passes over the training data (ignored when max_steps > 0).", minimum=0.0)
    max_steps: int = F(-1, "Stop after this many optimizer steps (-1: run the full epochs).", minimum=-1)
    batch_size: int = F(4, "Examples per device per forward pass (with packing: sequences of up to "
                        "max_length tokens filled with several examples).", minimum=1)
    grad_accum: int = F(1, "Forward passes accumulated per optimizer step; the effective batch is "
                        "batch_size × grad_accum × GPUs.", minimum=1)
    lr: float = F(2e-4, "Peak learning rate.", minimum=0.0)
    scheduler: str = F("linear", "Learning-rate schedule after warm-up.", choices=SCHEDULERS)
    warmup_ratio: float = F(0.0, "Fraction of steps spent warming the learning rate up from 0.",
                            minimum=0.0, maximum=1.0)
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
    save_steps: int = F(0, "Save a checkpoint every N steps (0: only at the end).", minimum=0)
    save_total_limit: int = F(2, "Keep only the last K checkpoints.", minimum=1, advanced=True)
    logging_steps: int = F(1, "Report a step event every N steps.", minimum=1, advanced=True)
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
            "model": _dc_to_dict(self.model),
            "data": _dc_to_dict(self.data),
            "method": _dc_to_dict(self.method),
            "train": _dc_to_dict(self.train),
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
            kwargs[name] = _dc_from_dict(klass, d.get(name) or {}, name)
        mdict = dict(d.get("method") or {})
        if not isinstance(mdict, dict):
            raise ConfigError("method", "must be a mapping like {name: lora, r: 16}", mdict)
        mname = mdict.pop("name", "lora")
        mklass = method_params_class(mname, path="method.name")
        kwargs["method"] = _dc_from_dict(mklass, mdict, "method")
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
        atomic_write_text(Path(path), self.to_yaml())

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
            if len(parts) < 2 or parts[0] not in ("model", "data", "method", "train"):
                raise ConfigError(key, "unknown field; use section.field",
                                  choices=["model.*", "data.*", "method.*", "train.*", "output_dir"])
            if parts == ["method", "name"] and value != d["method"].get("name"):
                d["method"] = {"name": value}  # a new method starts from its own defaults
                continue
            target = d[parts[0]]
            for i, part in enumerate(parts[1:-1], start=1):   # a nested section: train.distributed.strategy
                if not isinstance(target.get(part), dict):
                    raise ConfigError(".".join(parts[:i + 1]), "is not a section with fields")
                target = target[part]
            target[parts[-1]] = value
        return RunConfig.from_dict(d, "overrides")

    # ---- validation -------------------------------------------------------------------------
    def validate(self) -> RunConfig:
        """Check every field; raise ConfigError naming the first bad one. Returns self."""
        for section in ("model", "data", "method", "train"):
            _validate_dc(getattr(self, section), section)
        if not self.output_dir or not str(self.output_dir).strip():
            raise ConfigError("output_dir", "must name a folder")
        t = self.train
        if t.max_steps <= 0 and t.epochs <= 0:
            raise ConfigError("train.epochs", "must be > 0 when train.max_steps is -1", t.epochs)
        if t.max_steps == 0:
            raise ConfigError("train.max_steps", "must be -1 (use epochs) or a positive number", 0)
        validate_distributed(t.distributed)
        from engine.methods.params import validate_method_params

        validate_method_params(self)
        return self

    def errors(self) -> list[ConfigError]:
        """All problems at once (the GUI marks every bad field), in field order."""
        out: list[ConfigError] = []
        for section in ("model", "data", "method", "train"):
            out.extend(_collect_dc_errors(getattr(self, section), section))
        if not out:
            try:
                self.validate()
            except ConfigError as e:
                out.append(e)
        return out


# ---- helpers --------------------------------------------------------------------------------

def method_params_class(name: str, path: str = "method.name") -> type[MethodConfig]:
    from engine.methods.params import PARAMS

    if name not in PARAMS:
        raise ConfigError(path, "unknown method", name, choices=sorted(PARAMS))
    return PARAMS[name]


def field_help(klass, name: str) -> str:
    for f in fields(klass):
        if f.name == name:
            return f.metadata.get("help", "")
    return ""


def _dc_to_dict(obj) -> dict:
    out = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):   # a nested section, e.g. train.distributed
            out[f.name] = _dc_to_dict(v)
            continue
        out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
    if isinstance(obj, MethodConfig):  # name first reads better in YAML
        out = {"name": out.pop("name"), **out}
    return out


def _type_info(tp) -> tuple[set[type], bool]:
    """The accepted base types of an annotation, and whether None is allowed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        allowed, nullable = set(), False
        for a in args:
            if a is type(None):
                nullable = True
            else:
                allowed |= _type_info(a)[0]
        return allowed, nullable
    if origin is not None:
        return {origin}, False
    if tp is Any:
        return {object}, True
    return {tp}, False


@functools.cache  # get_type_hints re-evaluates annotations each call; forms validate on every keystroke
def _resolved_types(klass) -> dict[str, Any]:
    return typing.get_type_hints(klass)


def coerce_value(klass, fname: str, value, path: str):
    """Convert ``value`` to the field's type or raise ConfigError. Used by from_dict and the GUI."""
    tp = _resolved_types(klass)[fname]
    if dataclasses.is_dataclass(tp):      # a nested section: a mapping of its own fields
        if isinstance(value, tp):
            return value
        return _dc_from_dict(tp, value if value is not None else {}, path)
    allowed, nullable = _type_info(tp)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "~")
                         and str not in allowed):
        if nullable:
            return None
        raise ConfigError(path, "must not be empty", value)
    if object in allowed:
        return value
    if bool in allowed:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if int not in allowed:
            raise ConfigError(path, "must be true or false", value)
    if int in allowed and float not in allowed:
        if isinstance(value, bool):
            raise ConfigError(path, "must be a whole number", value)
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        if str not in allowed:
            raise ConfigError(path, "must be a whole number", value)
    if float in allowed:
        if isinstance(value, bool):
            raise ConfigError(path, "must be a number", value)
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        if str not in allowed:
            raise ConfigError(path, "must be a number", value)
    if list in allowed:
        if isinstance(value, (list, tuple)):
            return [str(v) for v in value]
        if isinstance(value, str) and (str not in allowed or "," in value):
            return [s.strip() for s in value.split(",") if s.strip()]
        if str not in allowed:
            raise ConfigError(path, "must be a list", value)
    if dict in allowed:
        if isinstance(value, dict):
            return dict(value)
        raise ConfigError(path, "must be a mapping", value)
    if str in allowed:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, list) and list in allowed:
            return value
        raise ConfigError(path, "must be text", value)
    raise ConfigError(path, f"has an unsupported type {tp}", value)


def _dc_from_dict(klass, d: dict, prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(prefix, "must be a mapping of fields", d)
    names = [f.name for f in fields(klass)]
    kwargs = {}
    for key, value in d.items():
        if key not in names:
            raise ConfigError(f"{prefix}.{key}", "unknown field", choices=[n for n in names if n != "name"])
        kwargs[key] = coerce_value(klass, key, value, f"{prefix}.{key}")
    return klass(**kwargs)


def _check_field(obj, f, path: str):
    v = getattr(obj, f.name)
    md = f.metadata
    coerce_value(type(obj), f.name, v, path)
    if "choices" in md and v not in md["choices"]:
        raise ConfigError(path, "is not one of the choices", v,
                          choices=["null" if c is None else c for c in md["choices"]])
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "min" in md and v < md["min"]:
            raise ConfigError(path, f"must be ≥ {md['min']}", v)
        if "max" in md and v > md["max"]:
            raise ConfigError(path, f"must be ≤ {md['max']}", v)


def _validate_dc(obj, prefix: str):
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            _validate_dc(v, f"{prefix}.{f.name}")
        else:
            _check_field(obj, f, f"{prefix}.{f.name}")


def _collect_dc_errors(obj, prefix: str) -> list[ConfigError]:
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            out.extend(_collect_dc_errors(v, f"{prefix}.{f.name}"))
            continue
        try:
            _check_field(obj, f, f"{prefix}.{f.name}")
        except ConfigError as e:
            out.append(e)
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the new one, never a half-written one."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
