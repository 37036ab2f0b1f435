"""Plain-language messages for exceptions (Qt-free: the job helper process uses it too)."""

from __future__ import annotations

# Exception types whose str() is already written for people (engine.config/models/data promise it).
USER_FACING = ("ConfigError", "ModelError", "DataError")


def plain_message(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip()
    if name in USER_FACING or getattr(exc, "user_facing", False):
        return text
    if isinstance(exc, FileNotFoundError):
        return f"The file {exc.filename or text} does not exist."
    if isinstance(exc, PermissionError):
        return f"Permission denied: {exc.filename or text}. Choose a location you can write to."
    if isinstance(exc, ImportError):
        return (f"A component is not installed ({exc.name or text}). Run `make setup` to install "
                "the studio's dependencies.")
    if isinstance(exc, MemoryError):
        return "The computer ran out of memory for this step."
    first = text.splitlines()[0] if text else ""
    if len(first) > 300:
        first = first[:300] + "…"
    return f"Something went wrong ({name}){': ' + first if first else '.'}"


class JobError(Exception):
    """An error raised in the job helper process, carried back as its type name and message."""

    user_facing = True

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.type_name = type_name
