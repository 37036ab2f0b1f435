"""The method registry: one ``register(MethodSpec(...))`` per method, duplicates rejected (peft's
``register_peft_method`` habit). The spec carries the method's parameter class and its build, so
there is one table, not one for parameters and another for code.

Family modules register on import; ``engine/methods/__init__.py`` imports every family, so any
import from ``engine.methods`` sees them all. A method defined elsewhere (a plug-in, a test)
registers the same way and is then everywhere: run files, forms, the estimator, training,
saving and loading.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from engine.errors import ConfigError
from engine.methods.spec import MethodSpec

REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; ValueError when its name is taken."""
    if spec.name in REGISTRY:
        raise ValueError(f"method {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method (tests and plug-ins that register one for a while)."""
    REGISTRY.pop(name, None)


def registered() -> list[str]:
    """Method names in registration order (the order the studio lists them in)."""
    return list(REGISTRY)


def get_method(name: str) -> MethodSpec:
    """The spec of method ``name``; ConfigError naming ``method.name`` when unknown."""
    if name not in REGISTRY:
        raise ConfigError("method.name", "unknown method", name, choices=sorted(REGISTRY))
    return REGISTRY[name]


def params_class(name: str, path: str = "method.name"):
    """The parameter dataclass of method ``name``; ConfigError naming ``path`` when unknown."""
    if name not in REGISTRY:
        raise ConfigError(path, "unknown method", name, choices=sorted(REGISTRY))
    return REGISTRY[name].params


class _ParamsView(Mapping):
    """Method name → parameter class, read live from the registry (not a second table)."""

    def __getitem__(self, name: str):
        return REGISTRY[name].params

    def __iter__(self) -> Iterator[str]:
        return iter(list(REGISTRY))

    def __len__(self) -> int:
        return len(REGISTRY)


PARAMS: Mapping = _ParamsView()


def validate_params(cfg) -> None:
    """Cross-field checks of a run's method that need no weights and no ML imports (called by
    ``RunConfig.validate``): the method's own ``validate`` hook, then the shape of
    ``target_modules`` and LoRA+."""
    m = cfg.method
    spec = get_method(m.name)
    if spec.validate is not None:
        spec.validate(cfg)
    tm = getattr(m, "target_modules", None)
    if tm is not None:
        if isinstance(tm, str) and tm not in ("auto", "all-linear"):
            raise ConfigError("method.target_modules", "must be auto, all-linear or a list of module names",
                              tm)
        if isinstance(tm, list) and not tm:
            raise ConfigError("method.target_modules", "the list is empty; name at least one module or use "
                              "auto", tm)
    if cfg.train.loraplus_lr_ratio and not spec.loraplus:
        raise ConfigError("train.loraplus_lr_ratio", f"LoRA+ only applies to LoRA-family methods, not {m.name}",
                          cfg.train.loraplus_lr_ratio)
