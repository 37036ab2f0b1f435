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
def _caches_out_of_home(tmp_path_factory):
    """The run index, imported runs and cached forgetting figures go to temporary folders, never the
    user's. What is costly to rebuild and the same for every test (the converted demo model, peft's
    config schema) is linked from the real cache, which tests only read."""
    from engine.paths import cache_dir

    saved = {k: os.environ.get(k) for k in ("PEFT_STUDIO_CACHE", "PEFT_STUDIO_HOME")}
    real = cache_dir()
    root = tmp_path_factory.mktemp("peft-studio")
    cache = root / "cache"
    cache.mkdir()
    if real.is_dir():
        for entry in real.iterdir():
            if entry.name == "models" or entry.name.startswith("peft-schema"):
                (cache / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    # Always ours, even when the shell set them (an empty or real value would send runs to the
    # user's run index: seen as test runs in the studio's Runs list).
    os.environ["PEFT_STUDIO_CACHE"] = str(cache)
    os.environ["PEFT_STUDIO_HOME"] = str(root / "home")
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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
