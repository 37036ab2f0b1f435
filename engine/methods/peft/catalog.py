"""The peft tuners offered as methods, one line each, and their run-file fields generated from
peft's own config dataclasses (read from source by ``schema``: no torch, no peft import).

What differs per tuner is declared on its line in ``PEFT_METHODS`` (title, the fields shown
outside "advanced", what ``target_modules`` names, merging, prompt kind, quantized bases, a
package it needs, a starting learning rate); ``engine.methods.peft.tuners`` turns each line
into a registered MethodSpec.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from engine.fields import F
from engine.methods.peft import schema as peft_schema
from engine.methods.spec import COMMON_FIELDS, MethodParams, name_field
from engine.methods.targets import TARGET_HELP

# ---- the rest of peft: one line per method ----------------------------------------------------

@dataclass(frozen=True)
class PeftMethod:
    """One peft tuner offered as a method; the run-file fields come from ``config`` itself."""

    name: str                    # our method name = peft's PeftType in lower case = its tuner folder
    config: str                  # peft's config class
    title: str
    description: str
    main: tuple = ()             # fields shown outside "advanced" (r, alpha, ... of this method)
    targets: str = "linear"      # what target_modules names: linear/norm/embedding/blocks (targets.py); none
    can_merge: bool = True
    merge_note: str = ""
    prompt: str | None = None    # None | "input" | "kv_prefix" (engine.methods.spec.PROMPT_KINDS)
    quantized: bool | None = None  # None: whether peft ships bitsandbytes layers for the tuner
    requires: str | None = None  # a package the tuner imports that peft does not depend on
    note: str = ""
    meta_ok: bool = True         # can be built on a meta-device model (for preflight and counts;
                                 # SHiRA and FRoD through stand-ins, engine/methods/peft/meta.py)
    defaults: dict = field(default_factory=dict)  # our defaults where peft's cannot fit small models
    lr: float | None = None      # a starting learning rate when a LoRA-tuned one does not suit (compare)
    generation_note: str = ""    # non-empty: generation cannot use the KV cache, and why (MethodSpec)
    no_checkpointing: bool = False  # peft refuses it with gradient checkpointing (a key/value prefix)
    fp16_fails: bool = False     # trains tensors in the model's dtype: no float16 on GPUs (incompatible.py)

    @property
    def peft_type(self) -> str:
        return self.name.upper()


_NOT_WEIGHTS = "it does not change the base weights, so there is nothing to merge"

PEFT_METHODS: dict[str, PeftMethod] = {m.name: m for m in [
    PeftMethod("adalora", "AdaLoraConfig", "AdaLoRA", "LoRA that moves its rank budget to the layers that "
               "need it during training (needs the number of steps).",
               main=("init_r", "target_r", "lora_alpha", "lora_dropout", "total_step")),
    PeftMethod("loha", "LoHaConfig", "LoHa", "Low-rank Hadamard product: two low-rank pairs multiplied "
               "element-wise; more expressive than LoRA at the same rank.", main=("r", "alpha")),
    PeftMethod("lokr", "LoKrConfig", "LoKr", "Low-rank Kronecker product update; very few parameters.",
               main=("r", "alpha")),
    PeftMethod("vera", "VeraConfig", "VeRA", "Shared frozen random matrices with tiny trainable scaling "
               "vectors per layer.", main=("r",), lr=1e-2),
    PeftMethod("oft", "OFTConfig", "OFT", "Orthogonal fine-tuning: rotates the frozen weights with "
               "block-diagonal orthogonal matrices, preserving their geometry.", main=("oft_block_size",)),
    PeftMethod("boft", "BOFTConfig", "BOFT", "Orthogonal fine-tuning with butterfly-factorised rotations.",
               main=("boft_block_size", "boft_n_butterfly_factor")),
    PeftMethod("ln_tuning", "LNTuningConfig", "LN tuning", "Trains only the normalisation layers; tiny "
               "and fast.", targets="norm", quantized=True, lr=1e-2, fp16_fails=True),
    PeftMethod("hra", "HRAConfig", "HRA", "Householder reflection adaptation: an orthogonal update built "
               "from r reflections.", main=("r",)),
    PeftMethod("miss", "MissConfig", "MiSS", "Matrix shard sharing: a small trainable shard expanded over "
               "each weight.", main=("r",)),
    PeftMethod("fourierft", "FourierFTConfig", "FourierFT", "Learns a few spectral coefficients of the "
               "weight update (inverse Fourier transform).", main=("n_frequency", "scaling"), lr=1e-2),
    PeftMethod("waveft", "WaveFTConfig", "WaveFT", "Learns sparse wavelet coefficients of the weight "
               "update.", main=("n_frequency", "scaling")),
    PeftMethod("vblora", "VBLoRAConfig", "VB-LoRA", "LoRA whose vectors are mixed from a shared vector "
               "bank; extreme parameter sharing.", main=("r", "num_vectors", "vector_length")),
    PeftMethod("randlora", "RandLoraConfig", "RandLoRA", "Full-rank updates from shared random bases "
               "with trainable diagonal scalings.", main=("r", "randlora_alpha")),
    PeftMethod("c3a", "C3AConfig", "C3A", "Circular convolution adaptation: block-circulant updates "
               "computed with FFTs.", main=("block_size",)),
    PeftMethod("shira", "ShiraConfig", "SHiRA", "Sparse high-rank adapter: trains a sparse subset of the "
               "weights themselves.", main=("r",)),
    PeftMethod("road", "RoadConfig", "RoAd", "2D rotary adaptation: learned rotations of output "
               "channel pairs; very cheap.", main=("variant", "group_size"), lr=1e-2),
    PeftMethod("delora", "DeloraConfig", "DeLoRA", "Decoupled LoRA: normalised low-rank update with a "
               "bounded learned strength.", main=("r", "delora_lambda")),
    PeftMethod("gralora", "GraloraConfig", "GraLoRA", "Granular LoRA: the weight is split into k×k blocks, "
               "each with its own low-rank adapter.", main=("r", "alpha", "gralora_k")),
    PeftMethod("hira", "HiraConfig", "HiRA", "Hadamard high-rank adaptation: a low-rank update multiplied "
               "element-wise with the frozen weight.", main=("r",)),
    PeftMethod("lily", "LilyConfig", "Lily", "Low-rank interconnected adapters shared across layers.",
               main=("r", "stride_A", "num_B"), can_merge=False,
               merge_note="peft does not implement merging for Lily",
               # peft's LilyLayer.forward: expert weights = router softmax averaged over every token of
               # the call (`reshape(-1, num_B).mean(0)`).
               generation_note="Lily's router averages over every token of a forward call (and every "
                               "sequence of a batch), so each answer is generated by a full forward per "
                               "token, one prompt at a time, as training computed it"),
    PeftMethod("glora", "GloraConfig", "GLoRA", "Generalised LoRA: scales and shifts of weights, "
               "activations and biases, each low-rank, vector or scalar.", main=("r",)),
    PeftMethod("deft", "DeftConfig", "DEFT", "Decompositional fine-tuning: replaces a learned projection "
               "of the weight with an injected update.", main=("r",)),
    PeftMethod("peanut", "PeanutConfig", "PEANuT", "Weight-aware nonlinear adapters (a small network "
               "applied to the frozen weight).", main=("r", "depth", "act_fn")),
    PeftMethod("psoft", "PsoftConfig", "PSOFT", "Orthogonal fine-tuning inside the weight's principal "
               "subspace (SVD-initialised).", main=("r",)),
    PeftMethod("pvera", "PveraConfig", "PVeRA", "Probabilistic VeRA: VeRA with sampled scaling vectors.",
               main=("r",), lr=1e-2),
    PeftMethod("tinylora", "TinyLoraConfig", "TinyLoRA", "A handful of parameters projected into "
               "low-rank updates by frozen random maps.", main=("r", "u"), lr=1e-2),
    PeftMethod("unilora", "UniLoraConfig", "Uni-LoRA", "All LoRA parameters of the model drawn from one "
               "shared trainable vector.", main=("r", "theta_d_length"), lr=1e-2),
    PeftMethod("frod", "FrodConfig", "FRoD", "Full-rank sparse updates in a rotated basis.",
               main=("sparse_rate",)),
    PeftMethod("osf", "OSFConfig", "OSF", "Orthogonal subspace fine-tuning: trains the low singular "
               "directions, keeps the top ones (continual learning)."),
    PeftMethod("supertuning", "SupertuningConfig", "Super-Tuning", "Trains a sparse set of the largest "
               "weight entries in place.", main=("sparsity",)),
    PeftMethod("beft", "BeftConfig", "BEFT", "Adds trainable bias vectors to linear layers, also where the "
               "model has none (BitFit for bias-free models).", can_merge=False,
               merge_note="BEFT adds biases the base layers usually do not have (most LLMs have no biases), "
                          "so peft cannot fold them in; use it as an adapter", quantized=False),
    PeftMethod("shadow", "ShadowConfig", "ShadowPEFT", "A small parallel shadow network rides along the "
               "frozen decoder and corrects its hidden states.", targets="blocks", can_merge=False,
               merge_note="its correction depends on the input, not a weight change",
               # peft 0.21's ShadowCache threads the shadow network's cache as `past_key_values`, which
               # transformers 5.24 renamed `cache`: with the cache, the shadow restarts at every token.
               generation_note="peft's ShadowPEFT cache does not survive transformers 5's cache "
                               "renaming, so answers are generated by a full forward per token", fp16_fails=True),
    PeftMethod("trainable_tokens", "TrainableTokensConfig", "Trainable tokens", "Trains the embeddings "
               "of chosen token ids only (e.g. new special tokens).", main=("token_indices",),
               targets="embedding", quantized=True, lr=1e-2),
    PeftMethod("adaption_prompt", "AdaptionPromptConfig", "Adaption prompt", "LLaMA-Adapter: learned "
               "prompts with zero-init gated attention in the top layers (Llama-style models).",
               main=("adapter_len", "adapter_layers"), targets="none", can_merge=False, merge_note=_NOT_WEIGHTS,
               # Its learned prompt joins the keys and values of the top layers' attention (a gated
               # second attention); the sequence itself does not get longer.
               prompt="kv_prefix", quantized=True, defaults={"adapter_len": 10, "adapter_layers": 1}, lr=1e-2,
               fp16_fails=True),
    PeftMethod("cartridge", "CartridgeConfig", "Cartridge", "A trainable key/value cache prefix (like "
               "prefix tuning without the encoder).", main=("num_virtual_tokens",), targets="none",
               # peft passes its prefix as the attention cache (as for prefix tuning): keys get longer.
               can_merge=False, merge_note=_NOT_WEIGHTS, prompt="kv_prefix", quantized=True,
               defaults={"num_virtual_tokens": 20}, lr=1e-2, no_checkpointing=True),
    PeftMethod("adamss", "AdamssConfig", "AdaMSS", "Adaptive multi-subspace adaptation (SVD-clustered "
               "subspaces).", main=("r", "num_subspaces"), requires="sklearn", meta_ok=False,
               note="needs scikit-learn"),
]}

# peft methods not offered, and why (shown in docs/methods.md and by `peft-studio` on request).
NOT_OFFERED = {
    "xlora": "mixes LoRA adapters you have already trained; it trains no adapter of its own here",
    "poly": "routes between skills by a task id per example, which a run file's data has no column for",
    "multitask_prompt_tuning": "needs a task id per example, which a run file's data has no column for",
    "cpt": "context-aware prompt tuning needs its own few-shot input format (token type masks per example)",
}

# peft fields never offered: peft fills them in, they are internal, or another method covers them.
_SKIP = {"peft_version", "base_model_name_or_path", "revision", "inference_mode", "task_type", "peft_type",
         "auto_mapping", "token_dim", "num_transformer_submodules", "num_attention_heads", "num_layers",
         "fan_in_fan_out", "layers_pattern", "megatron_core", "alora_invocation_tokens", "use_qalora",
         "qalora_group_size", "lora_bias", "target_parameters", "ensure_weight_tying", "use_dora",
         "exclude_modules", "progressbar", "tokenizer_name_or_path", "runtime_offload_base_weight"}

_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "list_str": list, "list_int": list,
          "str_or_list": list | str, "int_or_list": list}

PEFT_TARGET_HELP = ("Modules to adapt: `auto` (peft's default for the architecture) or a list of module "
                    "names.")


def _field_spec(m: PeftMethod, f: peft_schema.PeftField):
    if f.name == "target_modules":
        help_text = TARGET_HELP if m.targets == "linear" else PEFT_TARGET_HELP
        return f.name, list | str, F("auto", help_text)
    tp = _TYPES[f.kind]
    if f.nullable:
        tp = tp | None
    default = m.defaults.get(f.name, f.default)
    choices = f.choices + [None] if f.choices and f.nullable else f.choices
    md = dict(help=f.help or f"peft's `{f.name}`.", choices=choices, advanced=f.name not in m.main)
    if isinstance(default, list):
        return f.name, tp, F(default_factory=lambda d=tuple(default): list(d), **md)
    return f.name, tp, F(default, **md)


def _generate(m: PeftMethod, found: list | None) -> type[MethodParams] | None:
    if found is None:
        return None
    specs = [("name", str, name_field(m.name))]
    specs += [_field_spec(m, f) for f in found if f.name not in _SKIP and f.name != "name"
              and not (f.name == "target_modules" and m.targets == "none")]
    klass = dataclasses.make_dataclass(f"{m.config.removesuffix('Config')}Params", specs, bases=(MethodParams,))
    klass.__doc__ = f"{m.title}: {m.description}"
    klass.__module__ = __name__
    klass.peft_fields = {f.name: f for f in found}  # peft's own types, for converting values at build
    return klass


def peft_field_names(klass) -> list[str]:
    """The fields of a generated class that are peft's (every field but MethodParams' own)."""
    return [f.name for f in dataclasses.fields(klass) if f.name not in COMMON_FIELDS]


# Generated at import from peft's sources (cached per peft version; no torch): see schema's
# docstring for why they are not imported.
# A peft without one of these classes (older or newer) simply does not offer that method.
UNAVAILABLE: dict[str, str] = {}
PARAMS: dict[str, type[MethodParams]] = {}   # the generated parameter classes, by method name
_SCHEMA = peft_schema.schema({m.name: m.config for m in PEFT_METHODS.values()})
for _m in PEFT_METHODS.values():
    _klass = _generate(_m, _SCHEMA.get(_m.name))
    if _klass is None:
        UNAVAILABLE[_m.name] = f"the installed peft ({peft_schema.peft_version()}) has no {_m.config}"
        continue
    PARAMS[_m.name] = globals()[_klass.__name__] = _klass
