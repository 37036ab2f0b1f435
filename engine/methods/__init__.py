"""Fine-tuning methods: one module per family, each registering MethodSpecs.

The public API of the package (what the rest of the engine and the studio use):

* the registry — ``get_method``, ``registered``, ``register``, ``params_class``, ``PARAMS``;
* the spec — ``MethodSpec`` (capabilities and hooks), ``MethodParams``, ``BuildContext``;
* applying a method — ``preflight``, ``apply_method``, ``prepare_for_training``,
  ``effective_quantization``;
* ``storage`` (saving, loading and merging whatever a method trained) and ``targets``.

Layout: ``spec.py`` and ``registry.py`` at the bottom; ``families/<family>.py`` each own their
parameter class, build, checks and capabilities; ``peft/`` generates the rest of peft's tuners
from peft's own config dataclasses. Importing this package registers every family below and
imports neither torch nor peft (a run file is read with the parameter classes alone).

Adding a method: docs/architecture.md, "Adding a method".
"""

from engine.methods.apply import (
    apply_method,
    check_compatible,
    check_options,
    context_for,
    effective_quantization,
    for_meta,
    preflight,
    prepare_for_training,
)

# The families register themselves on import, and the registry keeps that order: the order the
# studio lists the methods in. So these imports are in that order, not sorted.
# isort: off
from engine.methods.families import lora, ia3, prompt, bottleneck, bitfit, selective, full  # noqa: F401
from engine.methods.peft import tuners  # noqa: F401  (every other peft tuner, after the families)
# isort: on
from engine.methods.registry import (
    PARAMS,
    get_method,
    params_class,
    register,
    registered,
    unregister,
    validate_params,
)
from engine.methods.spec import BuildContext, Incompatible, MethodParams, MethodSpec

__all__ = [
    "PARAMS", "BuildContext", "Incompatible", "MethodParams", "MethodSpec", "apply_method", "check_compatible",
    "check_options", "context_for",
    "effective_quantization", "for_meta", "get_method", "params_class", "preflight", "prepare_for_training",
    "register", "registered", "unregister", "validate_params",
]
