"""What you see is what you trained: the one generation path against the no-cache reference.

For every registered method (the generated peft tuners included), a run folder with a
non-trivial adapter (engine.export.testing: the real method build, weights pushed away from
their start) is opened the way chat and the playground open it, and:

* the product's greedy answers (``generate_batch``, with the KV cache) equal greedy decoding by
  a full forward pass at every step (``reference_greedy``);
* batched answers equal single ones, and the streamed text chat shows equals both;
* the adapter really changes the answer (else the equality above could hold vacuously);
* a method that adds virtual tokens or key/value prefixes declares it (``MethodSpec.prompt``).
"""

from __future__ import annotations

import pytest

from engine.inference import GenerationSettings, generate_batch, reference_greedy, stream
from engine.methods import get_method, registered
from tests.engine.test_methods import CASES, _marks

CONVERSATIONS = [  # of different lengths, so that a batch pads one of them
    [{"role": "user", "content": "Hi"}],
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "Once upon a time a small model learned to speak."}],
]
TOKENS = 8
GREEDY = GenerationSettings(max_new_tokens=TOKENS, temperature=0.0)

# Method fields the tiny model needs beyond test_methods' (sizes for hidden=64); `scale`: how far
# the adapter's weights are pushed from their start so that it changes a greedy answer.
EXTRA: dict[str, dict] = {
    "trainable_tokens": {"token_indices": list(range(0, 320))},
}
SCALE = {"vera": 2.0, "pvera": 2.0, "tinylora": 2.0, "unilora": 2.0, "fourierft": 50.0, "waveft": 50.0,
         "ln_tuning": 1.0, "road": 1.0}


def _method_fields(name: str) -> dict:
    fields = dict(CASES.get(name, {}).get("params", {}))
    fields.update(EXTRA.get(name, {}))
    return fields


@pytest.mark.parametrize("name", [pytest.param(n, id=n, marks=_marks(n)) for n in registered()])
def test_greedy_output_equals_the_no_cache_reference(name, request, tmp_path, monkeypatch):
    from engine.export.testing import make_adapter_run
    from engine.inference.prefix import INPUT, KV_PREFIX, prefix_kind
    from engine.playground import BASE, Playground

    monkeypatch.setenv("PEFT_STUDIO_HOME", str(tmp_path / "home"))
    spec = get_method(name)
    bias = CASES.get(name, {}).get("model") == "tiny_model_bias"
    base_dir = request.getfixturevalue("tiny_model_lively_bias" if bias else "tiny_model_lively")
    run = make_adapter_run(tmp_path / "run", base_dir, name, seed=3, scale=SCALE.get(name, 0.5),
                           **_method_fields(name))
    pg = Playground(run, device="cpu").load()
    tok = pg.tokenizer

    with pg.use("final") as model:
        kind = prefix_kind(model)
        batched = generate_batch(model, tok, CONVERSATIONS, GREEDY)
        single = [generate_batch(model, tok, [c], GREEDY)[0] for c in CONVERSATIONS]
        reference = [reference_greedy(model, tok, c, TOKENS) for c in CONVERSATIONS]
    shown = [pg.generate("final", c, GREEDY) for c in CONVERSATIONS]  # what chat and the playground print
    base = [pg.generate(BASE, c, GREEDY) for c in CONVERSATIONS]

    assert single == reference, f"{name}: cached generation differs from the full-forward reference"
    assert batched == single, f"{name}: a batch answers differently from single prompts"
    assert shown == single, f"{name}: the streamed text differs from generate_batch"
    assert shown != base, f"{name}: the adapter changes no answer, so the comparison proves nothing"
    # The declaration the estimator and the trainer read agrees with what the model does.
    if kind == INPUT:
        assert spec.prompt == "input", f"{name} prepends virtual input tokens but declares prompt={spec.prompt!r}"
    elif kind == KV_PREFIX:
        assert spec.prompt == "kv_prefix", f"{name} adds key/value prefixes but declares prompt={spec.prompt!r}"


def test_stream_stops_when_cancelled_and_raises_generation_errors(tiny_model_lively):
    import threading

    from transformers import AutoModelForCausalLM

    from engine.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_lively).eval()
    tok = load_tokenizer(str(tiny_model_lively))
    cancel = threading.Event()
    pieces = []
    for piece in stream(model, tok, CONVERSATIONS[0], GenerationSettings(max_new_tokens=200), cancel):
        pieces.append(piece)
        cancel.set()
    assert 1 <= len(pieces) <= 3
    with pytest.raises(Exception):  # noqa: B017 - any error in the generating thread reaches the consumer
        list(stream(model, tok, CONVERSATIONS[0], GenerationSettings(max_new_tokens=-5)))


def test_stop_tokens_include_the_models_end_of_turn(tiny_model_lively):
    from transformers import AutoModelForCausalLM

    from engine.inference import stop_token_ids
    from engine.models import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_lively)
    tok = load_tokenizer(str(tiny_model_lively))
    model.generation_config.eos_token_id = [tok.eos_token_id, 7]
    assert stop_token_ids(model, tok) == [tok.eos_token_id, 7]
