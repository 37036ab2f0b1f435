"""The playground: the base side really is the base, tuned and checkpoint sides differ, the
terminal chat works, and generation can be stopped."""

from __future__ import annotations

import io
import threading

import pytest

from engine.export.testing import make_adapter_run
from engine.inference import GenerationSettings, stream
from engine.playground import BASE, Playground, chat_loop

MESSAGES = [{"role": "user", "content": "What is two plus two?"}]
GREEDY = GenerationSettings(max_new_tokens=16, temperature=0.0, seed=0)


def plain_base_answer(model_dir, messages=MESSAGES, settings=GREEDY) -> str:
    """The base model's output with no adapter (and no peft) anywhere."""
    from transformers import AutoModelForCausalLM

    from engine.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    return "".join(stream(model, load_tokenizer(str(model_dir)), messages, settings)).strip()


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    return make_adapter_run(tmp_path_factory.mktemp("pg") / "run", tiny_model_dir, "lora", seed=5,
                            checkpoints=(2, 4), scale=0.5)


@pytest.fixture(scope="module")
def playground(lora_run):
    return Playground(lora_run).load()


def _greedy_ids(model, tokenizer, n=16):
    """Token ids of a forced-length greedy answer (a random tiny model may stop at once)."""
    import torch

    from engine.inference import build_prompt

    enc = tokenizer(build_prompt(tokenizer, MESSAGES), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return out[0, enc["input_ids"].shape[1]:].tolist()


def test_base_side_equals_the_base_model_without_any_adapter(playground, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    expected = _greedy_ids(plain, playground.tokenizer)
    with playground.use(BASE) as model:
        assert _greedy_ids(model, playground.tokenizer) == expected
    with playground.use("final") as model:
        assert _greedy_ids(model, playground.tokenizer) != expected, "the tuned side must show the adapter"
    with playground.use(BASE) as model:  # still the base after switching back and forth
        assert _greedy_ids(model, playground.tokenizer) == expected
    # The text path the studio and the chat use agrees too.
    assert playground.generate(BASE, MESSAGES, GREEDY) == plain_base_answer(tiny_model_dir)


def test_base_side_logits_are_the_plain_model_logits(playground, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[1, 5, 9, 14, 20, 3]])
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        expected = plain(input_ids=ids).logits
        with playground.use(BASE) as model:
            got = model(input_ids=ids).logits
        with playground.use("final") as model:
            tuned = model(input_ids=ids).logits
    assert torch.equal(got, expected)
    assert not torch.allclose(tuned, expected, atol=1e-3)


def test_checkpoint_against_checkpoint(playground):
    assert playground.sources() == [BASE, "final", "checkpoint-4", "checkpoint-2"]
    assert playground.default_pair() == (BASE, "final")
    out = playground.compare(MESSAGES, ("checkpoint-2", "checkpoint-4"), GREEDY)
    assert set(out) == {"checkpoint-2", "checkpoint-4"}
    assert out["checkpoint-2"] != out["checkpoint-4"]


def test_same_seed_same_sample(playground):
    sampled = GenerationSettings(max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7)
    assert playground.generate("final", MESSAGES, sampled) == playground.generate("final", MESSAGES, sampled)


def test_streaming_yields_pieces_and_cancel_stops(playground):
    pieces = list(playground.stream("final", MESSAGES, GenerationSettings(max_new_tokens=24)))
    assert len(pieces) > 1
    cancel = threading.Event()
    got = []
    for piece in playground.stream("final", MESSAGES, GenerationSettings(max_new_tokens=200), cancel):
        got.append(piece)
        cancel.set()
    assert len(got) <= 3
    # Abandoning a stream half way must not leave the model busy or changed.
    before = playground.generate("final", MESSAGES, GREEDY)
    it = playground.stream(BASE, MESSAGES, GenerationSettings(max_new_tokens=200))
    next(it, None)
    it.close()
    assert before and playground.generate("final", MESSAGES, GREEDY) == before


def test_prompt_tuning_base_side_is_the_base(tiny_model_dir, tmp_path):
    run = make_adapter_run(tmp_path / "pt", tiny_model_dir, "prompt_tuning", scale=1.0)
    pg = Playground(run).load()
    from transformers import AutoModelForCausalLM

    expected = _greedy_ids(AutoModelForCausalLM.from_pretrained(tiny_model_dir), pg.tokenizer)
    with pg.use(BASE) as model:
        assert _greedy_ids(model, pg.tokenizer) == expected
    import torch

    ids = torch.tensor([[1, 5, 9, 14]])
    with torch.no_grad():
        with pg.use(BASE) as model:
            base_last = model(input_ids=ids).logits[0, -1]
        with pg.use("final") as model:  # the soft prompt is live on the tuned side
            tuned_last = model(input_ids=ids).logits[0, -1]
    assert not torch.allclose(base_last, tuned_last, atol=1e-4)
    assert pg.generate(BASE, MESSAGES, GREEDY) == plain_base_answer(tiny_model_dir)


def test_terminal_chat_compare(playground):
    lines = iter(["hello there", "/reset", "", "What is two plus two?", "/quit"])
    out = io.StringIO()
    rc = chat_loop(playground, [BASE, "final"], GREEDY, read=lambda prompt: next(lines), out=out)
    text = out.getvalue()
    assert rc == 0
    assert text.count(" base> ") == 2 and text.count("final> ") == 2 and "(conversation cleared)" in text


def test_chat_cli_reads_stdin(lora_run, monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("hi\n"))
    assert main(["chat", str(lora_run), "--max-new-tokens", "4"]) == 0
    assert "final> " in capsys.readouterr().out
    assert main(["chat", str(lora_run), "--source", "checkpoint-99"]) == 2
    assert "No source 'checkpoint-99'" in capsys.readouterr().err


def test_qlora_playground_compares_against_the_4bit_base(tiny_model_dir, tmp_path):
    """A QLoRA run is tried the way it trained: on the 4-bit base, which is then the base side."""
    import torch

    from engine.config import ModelConfig
    from engine.models import load_model

    run = make_adapter_run(tmp_path / "q", tiny_model_dir, "qlora", scale=0.5)
    pg = Playground(run).load()
    assert getattr(pg.model.get_base_model(), "is_loaded_in_4bit", False)
    plain4 = load_model(ModelConfig(name_or_path=str(tiny_model_dir)), quantization="nf4", device="cpu")
    ids = torch.tensor([[1, 5, 9, 14, 20, 3]])
    with torch.no_grad():
        expected = plain4(input_ids=ids).logits
        with pg.use(BASE) as model:
            assert torch.equal(model(input_ids=ids).logits, expected)
        with pg.use("final") as model:
            assert not torch.allclose(model(input_ids=ids).logits, expected, atol=1e-3)


@pytest.mark.parametrize("method,fields", [("bitfit", {}), ("selective", {"last_n_layers": 1}),
                                           ("bottleneck", {}), ("full", {})])
def test_methods_that_save_themselves_compare_against_the_true_base(method, fields, tiny_model_dir,
                                                                    tiny_model_bias, tmp_path):
    """BitFit/selective restore tensors onto the base, bottleneck adds modules, full is its own
    model: in each case the base side must be the untouched base, whatever was shown before."""
    import torch
    from transformers import AutoModelForCausalLM

    from engine.methods.storage import load_trained

    base_dir = tiny_model_bias if method == "bitfit" else tiny_model_dir
    run = make_adapter_run(tmp_path / "run", base_dir, method, seed=2, checkpoints=(2,), scale=0.5, **fields)
    ids = torch.tensor([[1, 5, 9, 14, 20, 3]])

    def run_logits(model):
        with torch.no_grad():
            return model(input_ids=ids).logits

    plain = run_logits(AutoModelForCausalLM.from_pretrained(base_dir).eval())
    final = run_logits(load_trained(AutoModelForCausalLM.from_pretrained(base_dir), run / "adapter").eval())
    ckpt = run_logits(load_trained(AutoModelForCausalLM.from_pretrained(base_dir),
                                   run / "checkpoints" / "checkpoint-2").eval())
    pg = Playground(run).load()
    assert pg.sources() == [BASE, "final", "checkpoint-2"]
    for source, expected in [(BASE, plain), ("final", final), (BASE, plain), ("checkpoint-2", ckpt),
                             ("final", final), (BASE, plain)]:
        with pg.use(source) as model:
            got = run_logits(model)
        assert torch.allclose(got, expected, atol=1e-6), source
    assert not torch.allclose(final, plain, atol=1e-3) and not torch.allclose(final, ckpt, atol=1e-4)
    assert pg.generate(BASE, MESSAGES, GREEDY) == plain_base_answer(base_dir)


def test_another_runs_adapter_on_the_same_base_is_a_source(lora_run, tiny_model_dir, tmp_path):
    """Issue 15's picker: beside this run's own adapters, another run's (same base, same method) can
    be a side; it generates exactly as that run's own playground does."""
    other = make_adapter_run(tmp_path / "other", tiny_model_dir, "lora", seed=11, scale=0.5)
    pg = Playground(lora_run)
    pg.add_source("other: final", other / "adapter")
    assert pg.sources()[-1] == "other: final"
    with pg.use("other: final") as model:
        got = _greedy_ids(model, pg.load().tokenizer)
    own = Playground(other).load()
    with own.use("final") as model:
        assert got == _greedy_ids(model, own.tokenizer)
    with pytest.raises(Exception, match="already"):
        pg.add_source("final", other / "adapter")
