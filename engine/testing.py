"""Tiny offline models for tests and benchmarks: no download, built in a second.

``make_tiny_model(dir)`` writes a Llama-style causal LM (hidden 64, 2 layers) with a BPE
tokenizer trained on a few lines and a ChatML chat template, loadable by plain
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Ahoy matey! The answer be forty-two, arr.",
    "What is two plus two? Two plus two is four.",
    "Translate to French: hello means bonjour.",
    "Question: what colour is the sky? Answer: the sky is blue.",
    "user assistant system instruction input output response",
    "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,;:!?'\"()[]{}-+*/=<>",
    "Once upon a time a small model learned to speak like a pirate.",
]


def make_tokenizer(vocab_size: int = 320, chat_template: str | None = CHATML_TEMPLATE, pad: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    kwargs = dict(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                  unk_token="<|endoftext|>")
    if pad:
        kwargs["pad_token"] = "<|endoftext|>"
    fast = PreTrainedTokenizerFast(**kwargs)
    if chat_template:
        fast.chat_template = chat_template
    return fast


def make_tiny_model(out_dir: str | Path, *, hidden_size: int = 64, layers: int = 2, heads: int = 4,
                    kv_heads: int = 2, intermediate: int = 128, seed: int = 0, chat_template: str | None =
                    CHATML_TEMPLATE, pad_token: bool = True, bias: bool = False, tie: bool = True,
                    init_std: float = 0.02) -> Path:
    """``init_std``: the weights' initialisation scale (transformers' ``initializer_range``). At
    the default a tiny random model predicts one token over and over; about 0.2 makes its greedy
    answers depend on the prompt and on an adapter, which generation tests need to see."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tokenizer(chat_template=chat_template, pad=pad_token)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads,
                      intermediate_size=intermediate, max_position_embeddings=512,
                      tie_word_embeddings=tie, attention_bias=bias, mlp_bias=bias, initializer_range=init_std,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
