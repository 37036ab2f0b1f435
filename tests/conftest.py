"""Shared fixtures: tiny offline models, built once per session (no download)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    """The prepared-data cache of every test (and its subprocesses) lives in a session folder."""
    old = os.environ.get("PEFT_STUDIO_DATA_CACHE")
    os.environ["PEFT_STUDIO_DATA_CACHE"] = str(tmp_path_factory.mktemp("data-cache"))
    yield
    if old is None:
        os.environ.pop("PEFT_STUDIO_DATA_CACHE", None)
    else:
        os.environ["PEFT_STUDIO_DATA_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A Llama-style model (hidden 64, 2 layers) with a ChatML template and a pad token."""
    from engine.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory):
    """The same architecture with no chat template and no pad token."""
    from engine.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_nt") / "model", chat_template=None, pad_token=False)


@pytest.fixture(scope="session")
def tiny_model_bias(tmp_path_factory):
    """A tiny Llama with attention and MLP biases (BitFit needs biases)."""
    from engine.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_bias") / "model", bias=True)


@pytest.fixture(scope="session")
def tiny_model_lively(tmp_path_factory):
    """The tiny Llama initialised at scale 0.2: its greedy answers depend on the prompt and on an
    adapter (at the default scale it repeats one token), so generation can be compared."""
    from engine.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_lively") / "model", init_std=0.2)


@pytest.fixture(scope="session")
def tiny_model_lively_bias(tmp_path_factory):
    """tiny_model_lively with attention and MLP biases (BitFit)."""
    from engine.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_lively_bias") / "model", init_std=0.2, bias=True)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)
