"""Which lines of an engine's stderr are the run's own and which are libraries talking.

The engine's stderr mixes its own lines (and, for the project's faults, a traceback) with what
transformers, torch, datasets and bitsandbytes print: FutureWarnings with the ``warnings.warn(``
line under them, progress bars, kernel-loading notices. The Log panel shows the library lines
apart, and the failure banner's "Show log" leaves them out, so the lines that explain a failure
are the ones a user sees.
"""

from __future__ import annotations

import re

# "…/site-packages/x.py:12: FutureWarning: …", "UserWarning: …" at the start of a line
_WARNING = re.compile(r"^(?:\S+\.py:\d+: )?[A-Z][A-Za-z]*Warning: ")
# the source line Python prints under a warning ("  warnings.warn(", "  return fn(*args)")
_WARN_SOURCE = re.compile(r"^\s+(?:warnings\.warn|warn)\(|^\s+\S.*\)$")
# progress bars (tqdm: "Map: 100%|█████| 6/6 [00:00<00:00, 1.2 examples/s]")
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\[\d\d:\d\d<")
# library notices that are no message of the run's
_NOTICES = ("Failed to load CPU gemm_4bit_forward", "kernels-community", "`torch_dtype` is deprecated",
            "huggingface/tokenizers: The current process just got forked")


def is_library_line(line: str, previous_was_library: bool = False) -> bool:
    """True for a line a library printed (a warning, its source line, a progress bar, a notice)."""
    text = line.rstrip()
    if not text:
        return previous_was_library
    if _WARNING.search(text) or _PROGRESS.search(text) or any(n in text for n in _NOTICES):
        return True
    # the indented source line right under a warning belongs to it
    return previous_was_library and bool(_WARN_SOURCE.match(text)) and not text.lstrip().startswith("File ")


def split_lines(lines: list[str]) -> tuple[list[str], list[str]]:
    """(the run's own lines, library lines), each in order."""
    own, lib, prev = [], [], False
    for line in lines:
        prev = is_library_line(line, prev)
        (lib if prev else own).append(line)
    return own, lib


def relevant_tail(text: str, limit: int = 40) -> str:
    """The last ``limit`` lines of a log that are the run's own (library chatter left out)."""
    own, _ = split_lines([ln for ln in (text or "").splitlines()])
    own = [ln for ln in own if ln.strip()]
    return "\n".join(own[-limit:])
