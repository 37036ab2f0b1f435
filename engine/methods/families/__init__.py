"""Method families written here or on peft's own configs: one module per family, each owning its
parameter class, build, checks and capabilities, and registering its MethodSpecs on import."""
