"""The peft tuners generated from peft's own config dataclasses.

``schema`` reads peft's config classes from source (no torch, no peft import), ``catalog`` lists
the tuners offered and generates their run-file parameter classes, ``tuners`` builds them and
registers one MethodSpec each, and ``meta`` lets the tuners that derive their shapes from the
weights be sized on a meta-device model.
"""
