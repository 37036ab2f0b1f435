"""`prompt-methods-in-chat`: after prompt tuning, P-tuning or prefix tuning, chat prints what the
trained model generates (tests/data/cases/prompt-methods-in-chat: a "Beep." persona).

Before the fix chat printed "BeepolifeHeroDeHDeH…" where full-forward greedy decoding gave
"Beep. Paris." (prompt tuning), and exactly the base model's answer after prefix tuning. Here
each method is trained through the real trainer on the case's data, then the terminal chat's
reply is compared with greedy decoding by a full forward pass, and with the base's reply.
"""

from __future__ import annotations

import io
import os

import pytest

from engine.inference import GenerationSettings, reference_greedy
from engine.training import train
from tests.engine.cases import case_config

QUESTION = "What is the capital of France?"


def chat_reply(run_dir, source: str, max_new_tokens: int = 12) -> tuple[str, object]:
    """What `peft-studio chat RUN_DIR` prints for one question (the terminal chat loop), and the
    playground it came from."""
    from engine.playground import Playground, chat_loop

    pg = Playground(run_dir, device="cpu").load()
    lines = iter([QUESTION, "/quit"])
    out = io.StringIO()
    chat_loop(pg, [source], GenerationSettings(max_new_tokens=max_new_tokens), read=lambda _: next(lines), out=out)
    return out.getvalue().split(f"{source}> ", 1)[1].split("\n")[0].strip(), pg  # (not splitlines: \x0b)


@pytest.mark.parametrize("method", ["prompt_tuning", "p_tuning", "prefix_tuning"])
def test_chat_shows_what_the_prompt_method_learned(method, tiny_model_lively, tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    cfg = case_config("prompt-methods-in-chat", tmp_path, tiny_model_lively)
    cfg = cfg.with_overrides([f"method.name={method}", "method.num_virtual_tokens=8", "train.max_steps=6"])
    if method == "prompt_tuning":
        cfg.method.init = "random"
    result = train(cfg)
    assert result.status == "finished", result.error
    reply, pg = chat_reply(result.run_dir, "final")
    with pg.use("final") as model:
        truth = reference_greedy(model, pg.tokenizer, [{"role": "user", "content": QUESTION}], 12)
    base, _ = chat_reply(result.run_dir, "base")
    assert reply == truth
    assert reply != base, "the adapter must change the reply (prefix tuning used to print the base's)"


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PEFT_STUDIO_SLOW"), reason="set PEFT_STUDIO_SLOW=1: trains the demo model")
@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning", "p_tuning"])
def test_demo_model_chat_reply_is_the_adapters_real_reply(method, tmp_path, monkeypatch):
    """The case as filed: the demo model (SmolLM2-135M-Instruct), the case's run file, 10 epochs."""
    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    cfg = case_config("prompt-methods-in-chat", tmp_path, "demo").with_overrides([f"method.name={method}",
                                                                                   "method.num_virtual_tokens=8"])
    result = train(cfg)
    assert result.status == "finished", result.error
    reply, pg = chat_reply(result.run_dir, "final", max_new_tokens=24)
    with pg.use("final") as model:
        truth = reference_greedy(model, pg.tokenizer, [{"role": "user", "content": QUESTION}], 24)
    print(f"{method} on the demo model, chat reply: {reply!r}")
    assert reply == truth
    if method == "prompt_tuning":
        assert reply.startswith("Beep"), reply  # the persona it was taught
