"""Plain-language messages for exceptions, and the one place the studio decides what is a user
error (Qt-free: the job helper process uses it too)."""

from __future__ import annotations

from engine import wire
from engine.errors import UserError
from engine.errors import error_field as engine_error_field


class TaskError(Exception):
    """A background task's failure as it crossed back to the UI: already in plain words.

    ``message`` is complete on its own; ``user_error`` says whether the user can fix it (then the
    window shows it as is, with ``hint``); ``error_type`` is the original exception's class name.
    """

    def __init__(self, message: str, error_type: str = "Error", user_error: bool = False, hint: str = "",
                 field: str = ""):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.user_error = user_error
        self.hint = hint
        self.field = field  # the run-file path the error is about ('' when none), for "Go to …"

    @classmethod
    def from_wire(cls, msg: dict) -> TaskError:
        return cls(msg.get("message") or "The task failed.", msg.get("error_type") or "Error",
                   bool(msg.get("user_error")), msg.get("hint") or "", msg.get("field") or "")


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc`` is the user's to fix (its text is written for people); the only place the
    studio decides it: a helper process's TaskError says so itself, anything else is a UserError."""
    if isinstance(exc, TaskError):
        return exc.user_error
    return isinstance(exc, UserError)


def plain_message(exc: BaseException) -> str:
    """What to show for ``exc``: a user error's own text; else a sentence, never a traceback."""
    text = str(exc).strip()
    if isinstance(exc, TaskError) or is_user_error(exc):
        return text  # a TaskError was made plain on the side that raised it
    name = type(exc).__name__
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


def error_field(exc: BaseException) -> str:
    """The run-file path a user error is about ('' when none): engine.errors.error_field, or what a
    helper process's TaskError carried over."""
    if isinstance(exc, TaskError):
        return exc.field
    return engine_error_field(exc) or ""


def error_message(exc: BaseException, id: int | None = None) -> dict:
    """``exc`` as a wire ``error`` message (engine/wire.py): plain text, user-error flag, hint, and
    the field it is about (``field``, when a user error names one)."""
    if isinstance(exc, TaskError):
        msg = wire.error(exc.message, error_type=exc.error_type, user_error=exc.user_error, hint=exc.hint, id=id)
    else:
        user = is_user_error(exc)
        hint = getattr(exc, "hint", "") if user else ""
        msg = wire.error(plain_message(exc), error_type=type(exc).__name__, user_error=user,
                         hint=hint if isinstance(hint, str) else "", id=id)
    field = error_field(exc) if is_user_error(exc) else ""
    if field:
        msg["field"] = field
    return msg


def window_message(exc: BaseException) -> str:
    """What the window shows for ``exc``: ``plain_message`` with run-file keys turned into the
    controls that set them (studio/wording.py)."""
    from studio.wording import window_text

    return window_text(plain_message(exc), user_error=is_user_error(exc))
