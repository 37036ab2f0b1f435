"""A transformers tokenizer → GGUF tokenizer metadata (``tokenizer.ggml.*``).

Two kinds, as llama.cpp has them:

* byte-level BPE ("gpt2": SmolLM, Llama 3, Qwen, Phi-4): tokens, merges, and the name of the
  pre-tokenizer (how text is split before BPE) that llama.cpp implements for it;
* SentencePiece-style BPE with byte fallback ("llama": Llama 2, Mistral, Gemma, Phi-3): tokens
  with scores and types. llama.cpp's SPM tokenizer merges the adjacent pair whose result has the
  highest score; the tokenizer.json that transformers uses ranks merges by exactly those scores
  (``convert_slow_tokenizer.generate_merges`` sorts by piece score), so a piece's score is the
  negative rank of the first merge that makes it.

Special token ids, add_bos/add_eos and merges come from ``gguf.SpecialVocab`` (llama.cpp's own
reader); the chat template is the one the data was rendered with (``chat_template_for``).
"""

from __future__ import annotations

import json
import re
import tempfile

from engine.export.atomic import ExportError

# llama.cpp names pre-tokenizers (``tokenizer.ggml.pre``) and implements each regex in C++
# (llama-vocab.cpp); its converter identifies them by hashing sample tokenizations against a
# table kept in convert_hf_to_gguf.py (not a library). We read the split rule in tokenizer.json
# instead, which also works for tokenizers trained from scratch. Key: the Split regex as
# tokenizer.json spells it (the "original regex" comments in llama-vocab.cpp).
_SPLIT_REGEXES = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}"
    r"\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "tekken",
}

_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def tokenizer_json(tokenizer) -> dict:
    try:
        return json.loads(tokenizer.backend_tokenizer.to_str())
    except Exception:
        raise ExportError("GGUF export needs a fast tokenizer (tokenizer.json); this model has only a slow "
                          "one. Save it with transformers as a fast tokenizer first.") from None


def tokenizer_kind(tokenizer) -> str:
    """``"gpt2"`` (byte-level BPE) or ``"llama"`` (SentencePiece-style BPE); ExportError otherwise."""
    data = tokenizer_json(tokenizer)
    model = data.get("model") or {}
    decoder = (data.get("decoder") or {}).get("type")
    if model.get("type") == "BPE" and not model.get("byte_fallback") and _has_byte_level(data):
        return "gpt2"
    if model.get("type") == "BPE" and model.get("byte_fallback"):
        return "llama"
    raise ExportError(f"GGUF export writes byte-level BPE (SmolLM, Llama 3, Qwen) and SentencePiece BPE (Llama 2, "
                      f"Mistral, Gemma) tokenizers; this one is {model.get('type')} with a {decoder} decoder. "
                      "Export the merged model and convert it with llama.cpp's convert_hf_to_gguf.py.")


def _has_byte_level(data: dict) -> bool:
    def kinds(part):
        if not part:
            return []
        if part.get("type") == "Sequence":
            return [p.get("type") for p in part.get("pretokenizers", part.get("decoders", []))]
        return [part.get("type")]

    return "ByteLevel" in kinds(data.get("pre_tokenizer")) or (data.get("decoder") or {}).get("type") == "ByteLevel"


def pre_tokenizer_name(tokenizer) -> str | None:
    """llama.cpp's name for the tokenizer's split rule, or None when llama.cpp has none for it."""
    pre = tokenizer_json(tokenizer).get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if "Digits" in kinds and any(p.get("individual_digits") for p in parts if p.get("type") == "Digits") \
            and any(p.get("type") == "ByteLevel" and p.get("use_regex", True) for p in parts):
        return "smollm"   # SmolLM / StarCoder: digits one by one, then GPT-2's byte-level split
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    for p in parts:
        if p.get("type") == "Split":
            rx = (p.get("pattern") or {}).get("Regex", "")
            if rx in _SPLIT_REGEXES:
                return _SPLIT_REGEXES[rx]
    return None


def check_tokenizer(tokenizer, tokenizer_pre: str | None = None) -> str:
    """Refuse (ExportError) a tokenizer llama.cpp would split differently; returns its kind."""
    kind = tokenizer_kind(tokenizer)
    if kind == "gpt2" and not (tokenizer_pre or pre_tokenizer_name(tokenizer)):
        raise ExportError("This tokenizer splits text with a rule llama.cpp has no implementation for (its "
                          "pre_tokenizer is not GPT-2's, Llama 3's, Qwen2's, SmolLM's or Tekken's); a GGUF would "
                          "tokenize differently from the model you trained.")
    return kind


def _looks_special(text: str) -> bool:
    """llama.cpp's converter marks these added tokens as control even when not flagged special."""
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<pad>", "<mask>") or \
        (text.startswith("<unused") and text.endswith(">"))


def _bpe_tokens(tokenizer, vocab_size: int):
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special or _looks_special(reverse[i])
                         else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _spm_tokens(tokenizer, vocab_size: int):
    import gguf

    model = tokenizer_json(tokenizer)["model"]
    rank: dict[str, int] = {}
    for r, m in enumerate(model.get("merges") or []):
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        rank.setdefault(a + b, r)
    reverse = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    unk = getattr(tokenizer, "unk_token", None)
    tokens, scores, types = [], [], []
    for i in range(vocab_size):
        piece = reverse.get(i)
        if piece is None:
            tokens.append(f"[PAD{i}]")
            scores.append(-10000.0)
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(piece)
        if i in added and piece not in model["vocab"]:
            scores.append(-1000.0)
            types.append(gguf.TokenType.CONTROL if added[i].special or _looks_special(piece)
                         else gguf.TokenType.USER_DEFINED)
        elif i in added and added[i].special:
            scores.append(0.0)
            types.append(gguf.TokenType.UNKNOWN if piece == unk else gguf.TokenType.CONTROL)
        elif _BYTE_TOKEN.fullmatch(piece):
            scores.append(0.0)
            types.append(gguf.TokenType.BYTE)
        else:
            # A piece no merge makes (a single character, or one BPE never reaches) must not win
            # a merge in llama.cpp: it gets the lowest score.
            scores.append(-float(rank[piece]) if piece in rank else (0.0 if len(piece) == 1 else -1e9))
            types.append(gguf.TokenType.NORMAL)
    return tokens, scores, types


def _adds_space_prefix(tokenizer) -> bool:
    """Whether llama.cpp must put "▁" before text (SentencePiece's add_dummy_prefix).

    llama.cpp adds it at the start and after every special token (as Llama 2's legacy
    tokenizer does). A tokenizer that adds it only at the very start (Metaspace with
    ``prepend_scheme="first"``) is matched after special tokens, where every chat prompt's text
    is: the chat template begins and separates turns with special tokens.
    """
    def first_piece(text: str, skip: int = 0) -> str:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][skip:skip + 1]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        return pieces[0] if pieces else ""

    special = getattr(tokenizer, "eos_token", None) or getattr(tokenizer, "bos_token", None)
    if special:
        return first_piece(special + "Hello", 1).startswith("\u2581")
    return first_piece("Hello").startswith("\u2581")


def add_tokenizer(writer, tokenizer, vocab_size: int, tokenizer_pre: str | None = None) -> None:
    """Write the tokenizer, special tokens and chat template into ``writer`` (a GGUFWriter)."""
    import gguf

    from engine.data import chat_template_for
    from engine.export.chat_tokens import end_of_turn_token

    kind = check_tokenizer(tokenizer, tokenizer_pre)
    writer.add_tokenizer_model(kind)
    if kind == "gpt2":
        tokens, types = _bpe_tokens(tokenizer, vocab_size)
        writer.add_tokenizer_pre(tokenizer_pre or pre_tokenizer_name(tokenizer))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
    else:
        tokens, scores, types = _spm_tokens(tokenizer, vocab_size)
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_add_space_prefix(_adds_space_prefix(tokenizer))
    # SpecialVocab reads merges, special ids and add_bos/add_eos from the saved tokenizer files,
    # exactly as llama.cpp's converter does.
    with tempfile.TemporaryDirectory(prefix="peft-studio-tok-") as d:
        tokenizer.save_pretrained(d)
        sv = gguf.SpecialVocab(d, load_merges=kind == "gpt2", n_vocab=len(tokens))
        # The template the data was rendered with: the model's own, or the ChatML default the
        # studio trains with when the tokenizer has none.
        sv.chat_template = chat_template_for(tokenizer)
        for typ, attr in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("unk", "unk_token_id"),
                          ("pad", "pad_token_id")):
            tid = getattr(tokenizer, attr, None)
            if tid is not None and typ not in sv.special_token_ids and tid < len(tokens):
                sv.special_token_ids[typ] = tid
        # State add_bos/add_eos explicitly (from what the tokenizer really does) rather than
        # leave llama.cpp to guess: it would prepend BOS for some architectures.
        with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        extra = len(with_special) > len(plain)
        sv.add_special_token["bos"] = bool(
            extra and tokenizer.bos_token_id is not None and with_special[0] == tokenizer.bos_token_id)
        sv.add_special_token["eos"] = bool(
            extra and tokenizer.eos_token_id is not None and with_special[-1] == tokenizer.eos_token_id)
        sv.add_to_gguf(writer, quiet=True)
    # The end-of-turn token (<|im_end|>, <end_of_turn>, <|eot_id|> …): llama.cpp stops on it even
    # when it is not the EOS token.
    eot = end_of_turn_token(tokenizer)
    if eot is not None:
        eot_id = tokenizer.convert_tokens_to_ids(eot)
        if isinstance(eot_id, int) and 0 <= eot_id < len(tokens):
            writer.add_eot_token_id(eot_id)
