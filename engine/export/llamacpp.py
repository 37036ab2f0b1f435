"""llama.cpp itself, through the optional ``llama-cpp-python`` package: quantize and run GGUF files.

Install with ``pip install 'peft-studio[llama]'`` (see ``gguf_quant.INSTALL_HINT``). Everything
here imports ``llama_cpp`` lazily; ``gguf_quant.llama_cpp_available()`` says whether it is there.
"""

from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from pathlib import Path

from engine.export.atomic import ExportError


def quantize(src: str | Path, dst: str | Path, ftype_name: str, threads: int | None = None) -> Path:
    """llama.cpp's quantizer (``llama_model_quantize``): ``src`` (an f16/f32 GGUF) → ``dst``.

    ``ftype_name`` is a llama_cpp constant such as ``LLAMA_FTYPE_MOSTLY_Q4_K_M``; llama.cpp picks
    the type of each tensor for that file type (and falls back for rows that are not whole
    blocks, as tiny models have).
    """
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, ftype_name)
    params.nthread = threads or os.cpu_count() or 1
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise ExportError(f"llama.cpp could not quantize {Path(src).name} to {ftype_name} (error {rc}).")
    return Path(dst)


@contextmanager
def _quiet_stderr():
    """llama.cpp logs model loading to the C stderr even with verbose=False in some builds."""
    try:
        fd = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


class LlamaCppModel:
    """A GGUF file loaded by llama.cpp (optionally with a GGUF LoRA adapter applied)."""

    name = "llama.cpp"

    def __init__(self, path: str | Path, lora: str | Path | None = None, n_ctx: int = 1024):
        import llama_cpp

        self.path = Path(path)
        try:
            with _quiet_stderr():
                # An f32 KV cache (llama.cpp's default is f16): the check is about the file, so the
                # runtime should add no rounding of its own.
                self.llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, logits_all=True, verbose=False,
                                           n_threads=os.cpu_count() or 1, seed=0,
                                           type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32,
                                           lora_path=str(lora) if lora else None)
        except (ValueError, RuntimeError) as e:
            raise ExportError(f"llama.cpp cannot load {self.path.name}: {e}") from None

    def close(self) -> None:
        close = getattr(self.llm, "close", None)
        if close is not None:
            close()

    def tokenize(self, text: str) -> list[int]:
        """Token ids as llama.cpp reads ``text`` (special tokens parsed, no BOS added)."""
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def is_end(self, token: int) -> bool:
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        return bool(llama_cpp.llama_vocab_is_eog(vocab, token))

    def end_ids(self) -> list[int]:
        """Every token llama.cpp ends generation on (EOS, EOT and the end-of-turn texts it knows)."""
        import llama_cpp

        vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        return [i for i in range(llama_cpp.llama_vocab_n_tokens(vocab)) if llama_cpp.llama_vocab_is_eog(vocab, i)]

    def logits(self, ids: list[int]):
        """(len(ids), vocab) float32 logits for every position, like a transformers forward pass."""
        import numpy as np

        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)], dtype=np.float32)

    def greedy(self, prompt_ids: list[int], max_new_tokens: int, stop_ids: list[int] | None = None,
               conv=None) -> list[int]:
        """Greedy continuation (argmax at each step); ends on a stop id or an end-of-generation token."""
        import numpy as np

        self.llm.reset()
        self.llm.eval(prompt_ids)
        out: list[int] = []
        stops = set(stop_ids or [])
        for _ in range(max_new_tokens):
            tok = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            out.append(tok)
            if tok in stops or self.is_end(tok):
                break
            self.llm.eval([tok])
        return out
