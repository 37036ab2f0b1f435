"""Continuing a saved adapter (``method.from_adapter``): SFT first, then DPO on top of it.

TRL's documented recipe ("DPO with PEFT": load the SFT adapter trainable, let the trainer copy it as
the reference), LLaMA-Factory's ``adapter_name_or_path`` and axolotl's ``lora_model_dir`` all
start a run from an adapter trained before. Here:

* :func:`resolve` turns the field into an adapter folder: a peft adapter folder
  (``adapter_config.json``) as it is, a PEFT Studio run folder as its final adapter
  (``engine.runs.final_adapter``, the rule export and the playground use).
* :func:`adopt` is the run's preflight for it, before any weights load: the adapter must be a
  peft adapter of ``method.name``'s method (QLoRA continues LoRA adapters: ``MethodSpec.quantizes``)
  trained on ``model.name_or_path`` (the same folder, or a model with the same architecture:
  ``demo`` and a local copy of SmolLM2 are the same model). The method's settings are then the
  adapter's own — from the run that trained it (its run.yaml) or read from
  ``adapter_config.json`` — so that run.yaml says truthfully what trained; ``from_adapter`` is
  recorded as the adapter folder itself.
* ``engine.methods.apply.continue_adapter`` loads it with
  ``peft.PeftModel.from_pretrained(base, path, is_trainable=True)``.

The reference model of DPO and KTO is then the starting policy (TRL's own ``ref`` copy of the
adapter, engine/training/preference.py), not the base.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from engine.config import RunConfig
from engine.errors import ConfigError, ModelError
from engine.fields import coerce_value
from engine.methods import PARAMS, get_method
from engine.methods.spec import COMMON_FIELDS
from engine.methods.storage import ADAPTER_CONFIG, STUDIO_KEY, is_model_folder, method_of
from engine.runs import RUN_FILE, final_adapter, is_run_folder

FIELD = "method.from_adapter"

# Run-file names of method fields whose peft config key differs (peft's LoraConfig, PromptEncoderConfig).
PEFT_KEYS = {"alpha": "lora_alpha", "dropout": "lora_dropout", "encoder_type": "encoder_reparameterization_type",
             "init_text": "prompt_tuning_init_text"}

# Sizes compared when the adapter's base and model.name_or_path are different folders or names.
ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads",
             "num_key_value_heads", "vocab_size")


@dataclass
class StartAdapter:
    """The adapter a run continues."""

    path: Path                   # the adapter folder that is loaded
    method: str                  # the method that saved it (engine.methods.storage.method_of)
    config: dict                 # its adapter_config.json
    run_dir: Path | None         # the PEFT Studio run that trained it, when known


def resolve(value: str) -> tuple[Path, Path | None]:
    """(adapter folder, run folder or None) for a ``method.from_adapter`` value. Raises
    ConfigError naming the field: a missing path, a file, a run without an adapter yet, a full
    fine-tune's model folder, or a folder that holds no adapter."""
    p = Path(str(value)).expanduser()
    if not p.exists():
        raise ConfigError(FIELD, f"{p} does not exist; give a saved adapter folder (with {ADAPTER_CONFIG}) or a "
                          "PEFT Studio run folder (with run.yaml)")
    if not p.is_dir():
        raise ConfigError(FIELD, f"{p} is a file; give the adapter folder that holds {ADAPTER_CONFIG}, or the "
                          "run folder")
    if is_run_folder(p):
        adapter = final_adapter(p)
        if adapter is None:
            raise ConfigError(FIELD, f"the run {p} has no adapter yet (neither adapter/ nor a checkpoint); let it "
                              "finish, or give an adapter folder")
        return adapter, p
    if not (p / ADAPTER_CONFIG).exists():
        if is_model_folder(p):
            raise ConfigError(FIELD, f"{p} is a complete model (a full fine-tune), not an adapter: set "
                              "model.name_or_path to it and leave method.from_adapter empty")
        raise ConfigError(FIELD, f"{p} holds no {ADAPTER_CONFIG}: it is neither a peft adapter folder nor a "
                          "PEFT Studio run folder (run.yaml)")
    # adapter/ and best/ sit in the run folder, checkpoints in its checkpoints/ folder.
    run = next((d for d in (p.parent, p.parent.parent) if is_run_folder(d)), None)
    return p, run


def read(value: str) -> StartAdapter:
    """The adapter ``value`` names, with its config and method (ConfigError naming the field)."""
    path, run = resolve(value)
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(FIELD, f"{path / ADAPTER_CONFIG} cannot be read: {e}") from None
    if not isinstance(config, dict):
        raise ConfigError(FIELD, f"{path / ADAPTER_CONFIG} is not an adapter config (a JSON object)")
    method = method_of(path)
    if method is None or method not in PARAMS:
        kind = config.get("peft_type") or config.get(STUDIO_KEY) or "?"
        raise ConfigError(FIELD, f"{path}: adapter type {kind} is not one PEFT Studio trains; it was written by "
                          "a newer peft or another tool")
    spec = get_method(method)
    if STUDIO_KEY in config or spec.saved_as != "peft" or spec.load is not None:
        raise ConfigError(FIELD, f"{path} was saved by {spec.title}, which changes the model's own tensors "
                          "instead of adding a peft adapter; only peft adapters can be continued (load "
                          "them with PeftModel.from_pretrained). Start a fresh run instead")
    if _is_prompt_learning(path):
        raise ConfigError(FIELD, f"{path} is a {spec.title} adapter: peft saves prompt-learning adapters as the "
                          "virtual tokens' values, not the prompt encoder that made them, and refuses to load one "
                          "trainable (PeftModel.from_pretrained: \"Cannot set a prompt learning adapter to "
                          "trainable\"). Start a fresh run, or continue a LoRA-style adapter")
    return StartAdapter(path=path, method=method, config=config, run_dir=run)


def _is_prompt_learning(path: Path) -> bool:
    """peft's own answer (``PeftConfig.is_prompt_learning``) for the adapter in ``path``."""
    from peft import PeftConfig

    try:
        return bool(getattr(PeftConfig.from_pretrained(str(path)), "is_prompt_learning", False))
    except (ValueError, TypeError, OSError):
        return False  # loading says what is wrong with it


def check_method(cfg: RunConfig, start: StartAdapter) -> None:
    """``method.name`` must be the adapter's method, or the one that trains it on a 4-bit base
    (``MethodSpec.quantizes``: qlora over a LoRA adapter). ConfigError naming both."""
    name = cfg.method.name
    if name == start.method or get_method(name).quantizes == start.method:
        return
    spec, theirs = get_method(name), get_method(start.method)
    hint = f"set method.name: {start.method}"
    if spec.needs_quantization:
        hint += f" (on a 4-bit base: method.name {start.method} with model.quantization: {spec.needs_quantization})"
    raise ConfigError("method.name", f"method.name is {name} ({spec.title}), but the adapter in {start.path} "
                      f"(method.from_adapter) is a {theirs.title} adapter ({start.method}); a run continues the "
                      f"adapter with the method that made it: {hint}", name)


def _arch(name_or_path: str, trust_remote_code: bool, offline: bool) -> dict:
    from engine.models import resolve_model_config

    conf = resolve_model_config(name_or_path, trust_remote_code, offline)
    conf = getattr(conf, "get_text_config", lambda: conf)()
    return {k: getattr(conf, k, None) for k in ARCH_KEYS}


def check_base(cfg: RunConfig, start: StartAdapter) -> str | None:
    """The adapter's ``base_model_name_or_path`` against ``model.name_or_path``: the same folder
    (``demo`` resolved as the project resolves it), or a model with the same architecture and
    sizes (a local copy, a hub id in the cache). A mismatch is a ConfigError naming both; returns
    a note when the adapter's base cannot be found here to compare (loading then checks shapes)."""
    from engine.models import resolve_source

    base = start.config.get("base_model_name_or_path")
    mine = cfg.model.name_or_path
    if not base:
        return f"{start.path / ADAPTER_CONFIG} does not name its base model; its fit is checked when it loads"
    try:
        mine_src = resolve_source(mine, cfg.model.offline)
    except ModelError:
        return None  # model.name_or_path's own preflight says what is wrong with it
    try:
        base_src = resolve_source(str(base), True)
    except ModelError:
        return (f"the adapter's base model {base} is not on this machine, so its fit to {mine} is checked when "
                "it loads")
    if Path(base_src.path).resolve() == Path(mine_src.path).resolve():
        return None
    ours = _arch(mine, cfg.model.trust_remote_code, cfg.model.offline)
    try:
        theirs = _arch(str(base), cfg.model.trust_remote_code, True)
    except ModelError:
        return f"the adapter's base model {base} cannot be read here, so its fit to {mine} is checked when it loads"
    diff = [k for k in ARCH_KEYS if ours[k] != theirs[k]]
    if diff:
        shown = ", ".join(f"{k} {theirs[k]} vs {ours[k]}" for k in diff[:4])
        raise ConfigError(FIELD, f"the adapter in {start.path} was trained on {base}, but model.name_or_path is "
                          f"{mine}, a different model ({shown}); an adapter only fits the model it was trained "
                          f"on: set model.name_or_path: {base}, or choose an adapter trained on {mine}")
    return None


def method_settings(cfg: RunConfig, start: StartAdapter) -> dict:
    """The method section as the adapter was trained: from its run's run.yaml when it came from
    a PEFT Studio run, else read from ``adapter_config.json`` by field name (fields peft's config
    does not record keep their defaults). ``name`` stays ``method.name``."""
    klass = PARAMS[cfg.method.name]
    names = [f.name for f in fields(klass) if f.name not in COMMON_FIELDS]
    source: dict = {}
    if start.run_dir is not None:
        try:
            source = RunConfig.load(start.run_dir / RUN_FILE).to_dict()["method"]
        except ConfigError:
            source = {}
    if not source:
        source = {n: start.config[PEFT_KEYS.get(n, n)] for n in names if PEFT_KEYS.get(n, n) in start.config}
    out = {"name": cfg.method.name}
    for n in names:
        if n in source:
            try:
                out[n] = coerce_value(klass, n, source[n], f"method.{n}")
            except ConfigError:
                continue  # a value our field cannot hold (peft's None for an empty list): keep the default
    return out


def adopt(cfg: RunConfig) -> tuple[RunConfig, StartAdapter | None, list[str]]:
    """``cfg`` with the method settings of the adapter it continues (unchanged without
    ``method.from_adapter``), the adapter, and notes for the run's log. Checks (ConfigError):
    the folder, the method, the base model. Reads files only: no weights load."""
    if not cfg.method.from_adapter:
        return cfg, None, []
    start = read(cfg.method.from_adapter)
    check_method(cfg, start)
    notes = []
    note = check_base(cfg, start)
    if note:
        notes.append(note)
    settings = method_settings(cfg, start)
    settings["from_adapter"] = str(start.path.resolve())
    d = cfg.to_dict()
    changed = [f"{k}: {d['method'].get(k)!r} → {v!r}" for k, v in settings.items()
               if k != "from_adapter" and d["method"].get(k) != v]
    d["method"] = settings
    out = RunConfig.from_dict(d, "run file")
    out.source_dir = cfg.source_dir
    where = f" (run {start.run_dir})" if start.run_dir is not None else ""
    notes.insert(0, f"Continuing the adapter {start.path}{where}: its {get_method(start.method).title} settings "
                 "are the run's" + (f" ({'; '.join(changed)})" if changed else ""))
    return out, start, notes


def adopted(cfg: RunConfig) -> RunConfig:
    """``adopt(cfg)``'s configuration alone (the estimate counts what will really train)."""
    return adopt(cfg)[0]
