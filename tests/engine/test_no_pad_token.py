"""Nothing about the user's model changes without a word (the `no-pad-token` case).

A tokenizer without a pad token is padded with its EOS token for training, and the run says so;
the tokenizer saved with the adapter, and the one an export writes, are the base's files byte for
byte (no pad token added, no padding side of ours).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.events import ListSink
from engine.models import TOKENIZER_FILES
from engine.training import train
from tests.engine.cases import case_config


@pytest.fixture(scope="module")
def no_pad_model(tmp_path_factory):
    """The tiny Llama with its chat template but no pad token (the case's `no_pad` variant)."""
    from engine.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("nopad") / "model", pad_token=False)


def _tokenizer_files(folder: Path) -> dict[str, bytes]:
    return {n: (folder / n).read_bytes() for n in TOKENIZER_FILES if (folder / n).is_file()}


def test_the_pad_choice_is_logged_and_the_saved_tokenizer_is_the_base(no_pad_model, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from engine.export import export_adapter

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    assert AutoTokenizer.from_pretrained(no_pad_model).pad_token is None
    cfg = case_config("no-pad-token", tmp_path, no_pad_model)
    sink = ListSink()
    result = train(cfg, sinks=[sink])
    assert result.status == "finished", result.error
    lines = [e["message"] for e in sink.of("log") if "pad token" in e["message"]]
    assert len(lines) == 1 and "'<|im_end|>'" in lines[0] and "unchanged" in lines[0]

    base = _tokenizer_files(no_pad_model)
    assert "tokenizer.json" in base and "tokenizer_config.json" in base
    assert _tokenizer_files(result.adapter_dir) == base
    assert AutoTokenizer.from_pretrained(result.adapter_dir).pad_token is None

    exported = export_adapter(result.run_dir, tmp_path / "export")
    assert _tokenizer_files(Path(exported.path)) == base


def test_a_tokenizer_with_a_pad_token_is_left_alone_and_nothing_is_said(tiny_model_dir):
    from engine.models import load_tokenizer

    said = []
    tok = load_tokenizer(str(tiny_model_dir), log=said.append)
    assert tok.pad_token == "<|endoftext|>" and said == []
