"""What the estimator needs to know about an architecture, read from config.json alone.

``load_arch(model_cfg)`` returns an :class:`Arch`: the transformers config (always a config that
transformers can instantiate, on the meta device or at tiny width) and the handful of sizes the
formulas use. An architecture transformers does not know becomes a Llama-shaped stand-in built
from the generic size fields, and the Arch says so (``generic=True``): the estimate is then an
approximation and is marked as one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError, ModelError
from engine.models.source import resolve_model_config

# Alternative spellings of the size fields across config.json files (GPT-2, OPT, Falcon, T5...).
_ALIASES = {
    "hidden_size": ("hidden_size", "n_embd", "d_model", "dim", "model_dim"),
    "num_hidden_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "num_attention_heads": ("num_attention_heads", "n_head", "num_heads", "n_heads"),
    "vocab_size": ("vocab_size", "padded_vocab_size", "n_vocab"),
    "intermediate_size": ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "hidden_dim"),
    "num_key_value_heads": ("num_key_value_heads", "n_head_kv", "num_kv_heads", "multi_query_group_num"),
}
REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


@dataclass
class Arch:
    hf_config: object            # a transformers PretrainedConfig
    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    generic: bool = False        # True: an unknown architecture estimated as a Llama-shaped model
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


def _first(d: dict, key: str):
    for k in _ALIASES.get(key, (key,)):
        v = d.get(k)
        if v is not None:
            return v
    return None


def _text_config(config):
    # Multimodal wrappers keep the language model's sizes in a sub-config.
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def arch_from_hf_config(config, source: str = "", generic: bool = False, notes=None) -> Arch:
    c = _text_config(config)
    d = c.to_dict()
    missing = [k for k in REQUIRED if _first(d, k) is None]
    if missing:
        raise ConfigError("model.name_or_path", f"the model config {source or ''} lacks "
                          f"{', '.join(missing)}; the estimate needs these sizes".replace("  ", " "))
    hidden = int(_first(d, "hidden_size"))
    heads = int(_first(d, "num_attention_heads"))
    kv = _first(d, "num_key_value_heads") or heads
    head_dim = d.get("head_dim") or hidden // heads
    inter = _first(d, "intermediate_size") or 4 * hidden
    tied = bool(getattr(c, "tie_word_embeddings", d.get("tie_word_embeddings", True)))
    return Arch(hf_config=config, model_type=str(d.get("model_type") or "unknown"), hidden=hidden,
                layers=int(_first(d, "num_hidden_layers")), heads=heads, kv_heads=int(kv),
                head_dim=int(head_dim), intermediate=int(inter), vocab=int(_first(d, "vocab_size")),
                tied=tied, generic=generic, source=source, notes=list(notes or []))


def _config_file(name_or_path: str) -> Path | None:
    p = Path(name_or_path).expanduser()
    if p.is_file() and p.suffix == ".json":
        return p
    if p.is_dir() and (p / "config.json").is_file():
        return p / "config.json"
    return None


def generic_config(d: dict, source: str):
    """A Llama-shaped stand-in for an architecture transformers cannot build."""
    from transformers import LlamaConfig

    missing = [k for k in REQUIRED if _first(d, k) is None]
    if missing:
        raise ConfigError("model.name_or_path", f"{source}: unknown architecture "
                          f"{d.get('model_type')!r} and the config lacks {', '.join(missing)}, so not even "
                          "a generic estimate is possible")
    hidden = int(_first(d, "hidden_size"))
    heads = int(_first(d, "num_attention_heads"))
    return LlamaConfig(
        hidden_size=hidden, num_hidden_layers=int(_first(d, "num_hidden_layers")),
        num_attention_heads=heads, num_key_value_heads=int(_first(d, "num_key_value_heads") or heads),
        head_dim=int(d.get("head_dim") or hidden // heads),
        intermediate_size=int(_first(d, "intermediate_size") or 4 * hidden),
        vocab_size=int(_first(d, "vocab_size")), tie_word_embeddings=bool(d.get("tie_word_embeddings", True)))


def load_arch(model_cfg) -> Arch:
    """The architecture named by ``model_cfg.name_or_path`` (no weights are read)."""
    from transformers import AutoConfig

    name = str(model_cfg.name_or_path or "").strip()
    if not name:
        raise ConfigError("model.name_or_path", "is empty: name a model folder, a config.json, a hub id "
                          "or `demo`")
    path = _config_file(name)
    if path is not None:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError("model.name_or_path", f"{path} is not readable JSON: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError("model.name_or_path", f"{path} does not hold a JSON object")
        try:
            config = AutoConfig.from_pretrained(str(path.parent),
                                                trust_remote_code=model_cfg.trust_remote_code)
        except Exception as e:  # unknown model_type, remote code needed, broken fields
            config = generic_config(raw, str(path))
            note = (f"generic estimate: unknown architecture {raw.get('model_type')!r} "
                    f"({type(e).__name__}); sized as a Llama-style decoder from its config fields")
            return arch_from_hf_config(config, str(path), generic=True, notes=[note])
        return arch_from_hf_config(config, str(path))
    try:
        config = resolve_model_config(name, model_cfg.trust_remote_code, model_cfg.offline)
    except ModelError as e:
        raise ConfigError("model.name_or_path", str(e)) from None
    return arch_from_hf_config(config, name)


def shrink_config(config, *, hidden: int, intermediate: int, heads: int, kv_heads: int, head_dim: int,
                  layers: int = 3, vocab: int = 96):
    """The same architecture at tiny width: every option (norms, activations, soft-capping,
    sliding windows, fused projections) kept, only the sizes replaced. The activation tracer
    runs these on the CPU in milliseconds."""
    d = _text_config(config).to_dict()
    for k in ("layer_types", "_name_or_path", "transformers_version", "architectures",
              "max_window_layers", "quantization_config"):
        d.pop(k, None)
    # Long-context rope variants carry per-dimension factor lists sized for the real head_dim.
    for k in ("rope_scaling", "rope_parameters"):
        rs = d.get(k)
        if isinstance(rs, dict) and any(isinstance(v, list) for v in rs.values()):
            d[k] = {"rope_type": "default", "rope_theta": rs.get("rope_theta", d.get("rope_theta", 10000.0))} \
                if k == "rope_parameters" else None
    d.update(hidden_size=hidden, intermediate_size=intermediate, num_attention_heads=heads,
             num_key_value_heads=kv_heads, num_hidden_layers=layers, vocab_size=vocab)
    if "head_dim" in d or hidden != heads * head_dim:
        d["head_dim"] = head_dim
    if "query_pre_attn_scalar" in d:
        d["query_pre_attn_scalar"] = head_dim
    for k in ("pad_token_id", "bos_token_id", "eos_token_id"):
        v = d.get(k)
        if isinstance(v, int) and v >= vocab:
            d[k] = 0
        elif isinstance(v, list):
            d[k] = [t if t < vocab else 0 for t in v]
    return type(_text_config(config)).from_dict(d)
