"""What a fine-tuning method is to the rest of the engine: a MethodSpec.

A method declares what it can do (its *capabilities*) and supplies hooks; the trainer, the
estimator, compare, export and the studio read those and never test a method's name. So a new
method that differs from the existing ones — a key/value prefix, a trainable head — is handled
by saying so here, not by finding every ``if name == ...`` in the engine.

Capabilities (fields of :class:`MethodSpec`):

=======================  ==========================================================================
``params``               the run-file fields (a :class:`MethodParams` dataclass)
``can_merge``            the trained change folds into the base weights (``merge_note`` says why not)
``can_pack``             examples may share a packed row (not when virtual tokens are prepended)
``prompt``               None, ``"input"`` (virtual tokens prepended to the input: every sequence
                         gets longer) or ``"kv_prefix"`` (key/value prefixes in every attention
                         layer: keys get longer, the sequence does not)
``head``                 ``head(params)`` → ``"frozen"`` | ``"trained"`` (the LM head's own weight
                         trains, as in full fine-tuning) | ``"wrapped"`` (the head is adapted or
                         replaced by a wrapper, e.g. LoRA on ``lm_head`` or ``modules_to_save``)
``saves_full_model``     saves a complete model folder, not an adapter
``saved_as``             the saved format: ``peft`` | ``tensors`` (the base's own tensors that
                         trained) | ``modules`` (tensors of modules the method adds) | ``model``
``needs_biases``         only works on a model with bias parameters
``needs_quantization``   always loads the base quantized (QLoRA: ``"nf4"``)
``supports_quantized_base``  can train on a 4/8-bit base
``quantized_variant``    the method to suggest when memory is short (LoRA → ``qlora``)
``quantizes``            the method this one is on a 4-bit base (QLoRA → ``lora``): it saves, and
                         may continue (``method.from_adapter``), that method's adapters
``loraplus``             LoRA+ (a separate learning rate for B matrices) applies
``suggested_lr``         a starting learning rate when a run file's (LoRA-tuned) lr does not suit
``target_kind``          what ``method.target_modules`` names: linear | norm | embedding | blocks
``auto_targets``         ``auto_targets(ctx)`` → the modules ``target_modules: auto`` adapts, when
                         the method does not take the kind's default (IA³: keys, values, down)
``preflight_build``      safe to build on the meta-device model during preflight
``incompatible``         run-file settings the method cannot work with (:class:`Incompatible`: field,
                         value, why, what to choose instead, on which device); preflight refuses
                         them before any data or weights load. Quantization (from
                         ``supports_quantized_base``) is declared through :func:`incompatibilities`
``cached_generation``    generating with the KV cache gives the answers a full forward per token
                         gives (``generation_note`` says why not); when False the one generation
                         path (``engine.inference``) decodes without the cache, one prompt at a time
``can_shard``            FSDP / DeepSpeed ZeRO may split its parameters over processes (derived:
                         a peft-saved method, whose adapter rank 0 writes from the gathered
                         trainable tensors; the others read whole tensors to save themselves,
                         so they train on one process or with DDP)
=======================  ==========================================================================

Hooks: ``build`` (required), ``validate`` (cross-field checks, no weights), ``check`` (against
the architecture, from a meta model), ``save``/``load``/``merge``/``disable`` (methods that are
not peft tuners), ``trainer_callbacks``, ``meta_params`` (the parameters to build with on a model
without weights or tokenizer), and the estimator's ``forward_transient`` and
``memory_suggestions``.

Nothing here imports torch or peft: reading a run file needs the parameter classes only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from engine.fields import F

PROMPT_KINDS = (None, "input", "kv_prefix")
HEAD_USES = ("frozen", "trained", "wrapped")
SAVED_AS = ("peft", "tensors", "modules", "model")
TARGET_KINDS = ("linear", "norm", "embedding", "blocks")

# Module names of output heads across architectures (Llama/most: lm_head, GPT-NeoX: embed_out,
# ChatGLM: output_layer).
HEAD_NAMES = ("lm_head", "embed_out", "output_layer")


@dataclass(frozen=True)
class Incompatible:
    """A run-file setting a method cannot work with.

    ``field`` (``section.name``) at any of ``values`` is refused before any data or weights load;
    the message names the method and the field, says ``why`` and suggests ``instead`` (a setting
    or a method that works). ``device``: only on that device kind (``cpu`` or ``cuda``); None on
    every device. ``when``: a further condition on the whole run file (a callable taking the
    RunConfig), for combinations of fields."""

    field: str
    values: tuple
    why: str
    instead: str
    device: str | None = None
    when: Callable | None = None

    def applies(self, cfg, device: str) -> bool:
        """Whether ``cfg`` (a RunConfig) on ``device`` hits this incompatibility."""
        section, name = self.field.split(".", 1)
        value = getattr(getattr(cfg, section), name)
        if self.device is not None and self.device != device:
            return False
        return value in self.values and (self.when is None or bool(self.when(cfg)))


@dataclass
class MethodParams:
    """Base of every method's run-file fields (``method:`` in a run file). Subclasses add the
    method's own fields with ``engine.fields.F`` and set ``name``'s default to their name."""

    name: str = F("lora", "The fine-tuning method.")
    # Every method's, not peft's (engine.methods.peft.catalog leaves COMMON_FIELDS out of peft's
    # config): training continues an adapter saved before (engine/training/from_adapter.py).
    from_adapter: str | None = F(None, "Continue training a saved adapter instead of starting a fresh one "
                                 "(SFT first, then DPO on top): a peft adapter folder (adapter_config.json) "
                                 "or a PEFT Studio run folder (its final adapter). The method's settings "
                                 "(rank, targets, …) are then the adapter's own; method.name must be its "
                                 "method. Empty: a fresh adapter.", path="folder")


COMMON_FIELDS = ("name", "from_adapter")   # MethodParams' own fields, not the method's settings


def name_field(name: str):
    """The ``name`` field of a method's parameter class, defaulting to ``name``."""
    return F(name, "The fine-tuning method.")


@dataclass
class BuildContext:
    """What a build or check may know about the model without touching its weights."""

    model_type: str
    linear_names: list[str]
    tokenizer_path: str | None = None
    gradient_checkpointing: bool = False
    quantized: bool = False
    # Full names of the model's parameters and modules, so that check() can reject a method the
    # architecture cannot carry (BitFit without biases, an adapter site that does not exist)
    # from the meta-device model, before any weights load.
    param_names: list[str] = field(default_factory=list)
    module_names: list[str] = field(default_factory=list)


def head_from_targets(params) -> str:
    """The default ``head`` capability: ``wrapped`` when ``modules_to_save`` or a listed
    ``target_modules`` names an output head, else ``frozen``."""
    touched = list(getattr(params, "modules_to_save", None) or [])
    targets = getattr(params, "target_modules", None)
    if isinstance(targets, list):
        touched += targets
    return "wrapped" if any(t in HEAD_NAMES for t in touched) else "frozen"


def _same(params):
    return params


def _no_transient(params, rows: int, cols: int) -> int:
    return 0


def _no_suggestions(params) -> list[str]:
    return []


@dataclass(frozen=True)
class MethodSpec:
    """One method: its parameters, its build, what it can do, and its hooks (module docstring)."""

    name: str
    title: str
    family: str
    params: type[MethodParams]
    build: Callable                         # (model, cfg: RunConfig, ctx: BuildContext) -> model
    description: str = ""
    note: str = ""                          # a caveat the studio shows beside the method
    # ---- capabilities ----
    can_merge: bool = False
    merge_note: str = ""
    can_pack: bool = True
    prompt: str | None = None               # PROMPT_KINDS
    head: Callable = head_from_targets      # (params) -> one of HEAD_USES
    saves_full_model: bool = False
    saved_as: str = "peft"                  # SAVED_AS
    needs_biases: bool = False
    needs_quantization: str | None = None   # qlora: "nf4"
    supports_quantized_base: bool = True
    quantized_variant: str | None = None    # lora/dora: "qlora"
    quantizes: str | None = None            # qlora: "lora" (the method it is on a 4-bit base; it saves its adapters)
    loraplus: bool = False
    suggested_lr: float | None = None
    target_kind: str = "linear"             # TARGET_KINDS
    # (ctx: BuildContext) -> the module names `target_modules: auto` adapts, when they are not the
    # kind's default (engine.methods.targets.auto_targets); raises ValueError when none fit.
    auto_targets: Callable | None = None
    preflight_build: bool = False
    incompatible: tuple = ()                # Incompatible(...) entries
    cached_generation: bool = True
    generation_note: str = ""
    # ---- hooks ----
    validate: Callable | None = None        # (cfg) -> None, raises ConfigError; no weights, no ML imports
    check: Callable | None = None           # (cfg, ctx) -> None, raises ConfigError
    # Methods that are not peft tuners save and load themselves (engine/methods/storage.py).
    # None means peft's: model.save_pretrained / PeftModel.from_pretrained / merge_and_unload.
    save: Callable | None = None            # (model, dir) -> None
    load: Callable | None = None            # (base_model, dir) -> model
    merge: Callable | None = None           # (loaded model) -> plain transformers model
    # (loaded model) -> context manager inside which modules the method added are bypassed, so
    # the playground's base side computes as the base (bottleneck adapters).
    disable: Callable | None = None
    trainer_callbacks: Callable | None = None   # (model, resume_from) -> [transformers TrainerCallback]
    meta_params: Callable = _same           # (params) -> params to build with, without weights or tokenizer
    # The estimator's hooks (engine.estimate.memory):
    forward_transient: Callable = _no_transient  # (params, rows, cols) -> bytes a forward allocates and
                                                 # frees per adapted rows×cols weight, beyond activations
    memory_suggestions: Callable = _no_suggestions  # (params) -> extra advice when memory is short

    def __post_init__(self):
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"{self.name}: prompt must be one of {PROMPT_KINDS}, not {self.prompt!r}")
        if self.saved_as not in SAVED_AS:
            raise ValueError(f"{self.name}: saved_as must be one of {SAVED_AS}, not {self.saved_as!r}")
        if self.target_kind not in TARGET_KINDS:
            raise ValueError(f"{self.name}: target_kind must be one of {TARGET_KINDS}")
        if self.prompt is not None and self.can_pack:
            raise ValueError(f"{self.name}: a method that adds virtual tokens cannot pack examples")
        if not self.cached_generation and not self.generation_note:
            raise ValueError(f"{self.name}: say why the KV cache cannot be used (generation_note)")
        if self.params().name != self.name:
            raise ValueError(f"{self.params.__name__}.name defaults to {self.params().name!r}, "
                             f"expected {self.name!r}")

    @property
    def can_shard(self) -> bool:
        """FSDP or DeepSpeed ZeRO may split this method's parameters over processes
        (engine.distributed.preflight refuses the others)."""
        return self.saved_as == "peft" and self.save is None

    @property
    def prompt_based(self) -> bool:
        """Adds virtual tokens (to the input or as key/value prefixes)."""
        return self.prompt is not None

    def virtual_tokens(self, params) -> int:
        """Virtual tokens per sequence (``num_virtual_tokens`` of prompt-based methods; 0 else):
        data preparation leaves room for them in max_length either way."""
        return int(getattr(params, "num_virtual_tokens", 0)) if self.prompt else 0

    def input_tokens(self, params) -> int:
        """Positions the method prepends to every sequence's input (``prompt == "input"``)."""
        return self.virtual_tokens(params) if self.prompt == "input" else 0

    def incompatibilities(self) -> list[Incompatible]:
        """Every run-file setting this method cannot work with: its own ``incompatible`` entries
        and those its capabilities imply (a quantized base when ``supports_quantized_base`` is
        false)."""
        out = list(self.incompatible)
        if not self.supports_quantized_base:
            out.append(Incompatible(
                "model.quantization", ("nf4", "fp4", "int8"),
                "it cannot train on a quantized base (it has no layers for 4/8-bit weights)",
                "model.quantization: null, or a method that trains on a quantized base (lora, qlora, dora)"))
        return out

    def prefix_tokens(self, params) -> int:
        """Key/value positions the method adds in every attention layer (``prompt == "kv_prefix"``)."""
        return self.virtual_tokens(params) if self.prompt == "kv_prefix" else 0
