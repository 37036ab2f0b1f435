"""Try a run: the base model and the run's adapters side by side, and `peft-studio chat`.

One copy of the base weights is loaded and every source of the run is switched onto it, the
way its method allows (see the ``*Sides`` classes):

* peft tuners: each source is a named peft adapter; the ``base`` side is the unwrapped model
  inside peft's ``disable_adapter()``, so no adapter layer and no virtual prompt takes part;
* BitFit, selective, bottleneck: each source is a set of tensors restored onto the base; the
  ``base`` side puts the original values back (and bypasses added modules);
* full fine-tuning: the tuned side is its own model folder, loaded beside the base.

The ``base`` side really is the base (the peers' classic bug is a "base" pane that shows the
tuned model). Both sides use the same prompt, chat template, settings and seed.

Generation on the shared model is serialised by a lock: switching adapters while another
thread is generating would mix them.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.export.atomic import ExportError
from engine.export.loading import load_base, load_tokenizer_for
from engine.export.runinfo import RunInfo, load_run
from engine.inference import GenerationSettings
from engine.inference import stream as generate_stream
from engine.methods import effective_quantization
from engine.methods import storage as saved
from engine.methods.storage import load_model_folder
from engine.models import resolve_dtype

BASE = "base"


def _adapter_name(label: str) -> str:
    # peft adapter names become module-dict keys: no dots.
    return "a_" + re.sub(r"[^A-Za-z0-9_]", "_", label)


class _PeftSides:
    """peft tuners: one PeftModel, a named adapter per source."""

    def __init__(self, base, label: str, path: Path):
        from peft import PeftModel

        self.names = {label: _adapter_name(label)}
        self.model = PeftModel.from_pretrained(base, str(path), adapter_name=self.names[label])
        self.model.eval()

    def add(self, label: str, path: Path) -> None:
        if label not in self.names:
            self.names[label] = _adapter_name(label)
            self.model.load_adapter(str(path), adapter_name=self.names[label])
            self.model.eval()

    def tuned(self, label: str):
        self.model.set_adapter(self.names[label])
        return self.model

    @contextmanager
    def base(self):
        # disable_adapter() turns LoRA-style layers off (and undoes prompt-learning hooks);
        # generating through the unwrapped model also bypasses virtual prompts entirely.
        with self.model.disable_adapter():
            yield self.model.get_base_model()


class _TensorSides:
    """BitFit, selective, bottleneck: a source is the tensors it trained, restored onto the base
    in place. The base values of those tensors are kept (a copy the size of the adapter, not of
    the model) and put back for the base side; modules the method added are bypassed there."""

    def __init__(self, base, spec, label: str, path: Path):
        self.model, self.spec, self.paths = base, spec, {}
        self._base_names = {n for n, _ in base.named_parameters(remove_duplicate=False)}
        self._originals: dict = {}
        self._keep_originals(saved.tensor_names(path))
        spec.load(base, path)  # attaches added modules (bottleneck) and restores the tensors
        self.model.eval()
        self.paths[label], self.active = path, label

    def _keep_originals(self, names: list[str]) -> None:
        params = dict(self.model.named_parameters(remove_duplicate=False))
        for name in names:
            if name in self._base_names and name not in self._originals:
                self._originals[name] = params[name].detach().clone()

    def add(self, label: str, path: Path) -> None:
        if label not in self.paths:  # tensors it changes that no source changed yet still hold base values
            self._keep_originals(saved.tensor_names(path))
            self.paths[label] = path

    def _restore_originals(self) -> None:
        saved.restore_tensors(self.model, self._originals, "the base model")
        self.active = None

    def tuned(self, label: str):
        if self.active != label:
            saved.restore_tensors(self.model, saved.read_tensors(self.paths[label]), self.paths[label])
            self.active = label
        return self.model

    @contextmanager
    def base(self):
        from contextlib import nullcontext

        if self.active is not None:
            self._restore_originals()
        with self.spec.disable(self.model) if self.spec.disable else nullcontext():
            yield self.model


class _FullSides:
    """Full fine-tuning: each source is a whole model; one tuned model is kept beside the base."""

    def __init__(self, base, label: str, path: Path):
        self.base_model, self.paths = base, {}
        self.loaded: tuple[str, object] | None = None
        self.add(label, path)
        self.tuned(label)

    def add(self, label: str, path: Path) -> None:
        self.paths[label] = path

    def tuned(self, label: str):
        if self.loaded is None or self.loaded[0] != label:
            self.loaded = None  # let the previous one go before loading the next
            self.loaded = (label, load_model_folder(self.paths[label], self.base_model.dtype, str(self.base_model.device)))
        return self.loaded[1]

    @contextmanager
    def base(self):
        yield self.base_model


class Playground:
    """Generate with the base model or any adapter of a run.

    ``quantized=None`` loads the base the way the run trained (4-bit for QLoRA), so the tuned
    side behaves as it did in training; ``False`` forces full precision.
    """

    def __init__(self, run: str | Path | RunInfo, device: str | None = None, quantized: bool | None = None):
        self.info = run if isinstance(run, RunInfo) else load_run(run)
        self.device = device
        self.quantized = quantized
        self.model = None                    # the shared model (the base, for full fine-tunes)
        self.tokenizer = None
        self._sides = None                   # how sources switch on it: _PeftSides, _TensorSides, …
        self._extra: dict[str, Path] = {}    # other runs' adapters on the same base, by label
        self._lock = threading.RLock()

    # ---- what can be compared ---------------------------------------------------------------
    def add_source(self, label: str, path: str | Path) -> None:
        """Offer another adapter under ``label``: another run's, trained on the same base with the
        same method (it is loaded onto this run's base weights like a checkpoint)."""
        if label == BASE or label in self.sources():
            raise ExportError(f"There already is a source called {label!r}.")
        self._extra[label] = Path(path)

    def sources(self) -> list[str]:
        return [BASE] + [label for label, _ in self.info.sources()] + list(self._extra)

    def default_pair(self) -> tuple[str, str]:
        tuned = [s for s in self.sources() if s != BASE]
        if not tuned:
            raise ExportError(f"{self.info.run_dir} has no adapter or checkpoint to compare with the base yet.")
        return BASE, tuned[0]

    def _path(self, label: str) -> Path:
        for lab, p in self.info.sources():
            if lab == label:
                return p
        if label in self._extra:
            return self._extra[label]
        raise ExportError(f"No source {label!r} in {self.info.run_dir}; choose one of {', '.join(self.sources())}.")

    # ---- loading ------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self, progress: Callable[[str], None] | None = None) -> Playground:
        """Load the base and the run's first adapter (idempotent; other adapters load on demand)."""
        with self._lock:
            if self.model is not None:
                return self
            import torch

            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            quantized = self.quantized if self.quantized is not None else bool(effective_quantization(self.info.config))
            dtype = str(resolve_dtype(self.info.config.model.dtype, device)).replace("torch.", "")
            first = self.default_pair()[1]
            if progress:
                progress(f"Loading the base model ({self.info.config.model.name_or_path})")
            base = load_base(self.info, dtype, quantized=quantized, device=device)
            self.tokenizer = load_tokenizer_for(self.info, self._path(first))
            if progress:
                progress(f"Loading adapter {first}")
            path = self._path(first)
            spec = self.info.saved_method(path)
            try:
                if spec.saves_full_model:
                    self._sides = _FullSides(base, first, path)
                elif spec.load is not None:
                    self._sides = _TensorSides(base, spec, first, path)
                else:
                    self._sides = _PeftSides(base, first, path)
            except (ValueError, RuntimeError, KeyError) as e:  # ConfigError is a ValueError
                raise ExportError(f"The adapter {first} does not fit the base model: {e}") from None
            self.model = getattr(self._sides, "model", base)
            return self

    @contextmanager
    def use(self, source: str):
        """The model that generates for ``source`` (hold the context for the whole generation)."""
        self.load()
        with self._lock:
            if source == BASE:
                with self._sides.base() as model:
                    yield model
            else:
                self._sides.add(source, self._path(source))
                yield self._sides.tuned(source)

    # ---- generation ---------------------------------------------------------------------------
    def stream(self, source: str, messages: list[dict], settings: GenerationSettings | None = None,
               cancel: threading.Event | None = None) -> Iterator[str]:
        with self.use(source) as model:
            yield from generate_stream(model, self.tokenizer, messages, settings, cancel)

    def generate(self, source: str, messages: list[dict], settings: GenerationSettings | None = None) -> str:
        return "".join(self.stream(source, messages, settings)).strip()

    def compare(self, messages: list[dict], sources: tuple[str, str] | None = None,
                settings: GenerationSettings | None = None) -> dict[str, str]:
        """Both sides' answers to the same prompt with the same settings and seed."""
        left, right = sources or self.default_pair()
        return {s: self.generate(s, messages, settings) for s in (left, right)}


# ---- terminal chat (`peft-studio chat RUN_DIR`) ---------------------------------------------

CHAT_HELP = "Type a message. /reset clears the conversation, /quit (or Ctrl+D) leaves."


def chat_loop(pg: Playground, sources: list[str], settings: GenerationSettings, system: str | None = None,
              read: Callable[[str], str] = input, out=None) -> int:
    """A multi-turn chat; with two sources each answers in turn and keeps its own history."""
    out = out or sys.stdout
    histories: dict[str, list[dict]] = {}

    def reset():
        for s in sources:
            histories[s] = [{"role": "system", "content": system}] if system else []

    reset()
    width = max(len(s) for s in sources)
    print(CHAT_HELP, file=out, flush=True)
    while True:
        try:
            line = read("you> ")
        except EOFError:
            print(file=out)
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit", "/q"):
            return 0
        if text == "/reset":
            reset()
            print("(conversation cleared)", file=out, flush=True)
            continue
        if text in ("/help", "/?"):
            print(CHAT_HELP, file=out, flush=True)
            continue
        for s in sources:
            histories[s].append({"role": "user", "content": text})
            print(f"{s:>{width}}> ", end="", file=out, flush=True)
            cancel = threading.Event()
            pieces = []
            try:
                for piece in pg.stream(s, histories[s], settings, cancel):
                    pieces.append(piece)
                    print(piece, end="", file=out, flush=True)
            except KeyboardInterrupt:  # Ctrl+C stops this answer, not the chat
                cancel.set()
                print(" [stopped]", end="", file=out)
            print(file=out, flush=True)
            histories[s].append({"role": "assistant", "content": "".join(pieces).strip()})
