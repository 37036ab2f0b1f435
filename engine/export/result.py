"""What every export returns, and the progress callback type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# progress(stage, done, total): done/total are None for a stage of unknown length.
Progress = Callable[[str, "int | None", "int | None"], None]


def no_progress(stage: str, done: int | None = None, total: int | None = None) -> None:
    pass


@dataclass
class ExportResult:
    kind: str                 # adapter | merged | gguf | gguf-lora | weighted
    path: Path                # the output folder
    note: str | None = None   # something the user must read (e.g. "cannot merge; exported the adapter")
    details: dict = field(default_factory=dict)

    @property
    def files(self) -> list[str]:
        return sorted(p.name for p in self.path.iterdir()) if self.path.is_dir() else []

    def summary(self) -> str:
        what = {"adapter": "Adapter", "merged": "Merged model", "gguf": "GGUF model",
                "gguf-lora": "GGUF LoRA adapter", "weighted": "Weighted adapter"}.get(self.kind, self.kind)
        text = f"{what} written to {self.path}"
        if self.details.get("gguf_file"):
            text += f" ({self.details['gguf_file']})"
        agreement = self.details.get("agreement")
        if agreement:
            text += f"\nverified: {agreement['sentence']}\n{agreement['logits_sentence']}"
        elif self.details.get("max_abs_logit_diff") is not None:
            text += f"; verified, max |Δlogit| {self.details['max_abs_logit_diff']:.2e}"
        if self.details.get("ollama_command"):
            text += f"\nOllama: {self.details['ollama_command']}"
        return text
