"""Small widgets and formatters shared by the panels."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio import theme


def fmt_count(n) -> str:
    if n is None:
        return "—"
    n = float(n)
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f}"


def fmt_bytes(n) -> str:
    if n is None:
        return "—"
    n = float(n)
    for div, unit in ((1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(n) >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} B"


def fmt_duration(s) -> str:
    if s is None or s != s or s < 0:
        return "—"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def fmt_number(x, digits: int = 4) -> str:
    if x is None:
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}g}"


def scroll(widget: QWidget) -> QScrollArea:
    """Wrap a form so a short or narrow window scrolls instead of squashing or cutting rows off
    (a dock narrower than its fields gets a horizontal scroll bar, never clipped numbers)."""
    area = QScrollArea()
    area.setWidget(widget)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    return area


def scrolled_body(panel: QWidget, margins: int | None = None) -> QVBoxLayout:
    """Give ``panel`` a scroll area as its only child and return the layout to fill it with: a
    central tab whose content does not fit (a 1280×720 laptop) scrolls, and the window's minimum
    size never grows with a panel's content."""
    outer = QVBoxLayout(panel)
    outer.setContentsMargins(0, 0, 0, 0)
    body = QWidget()
    body.setObjectName(f"{panel.objectName() or type(panel).__name__}-body")
    outer.addWidget(scroll(body))
    lay = QVBoxLayout(body)
    if margins is not None:
        lay.setContentsMargins(margins, margins, margins, margins)
    return lay


def heading(text: str) -> QLabel:
    label = QLabel(text)
    f = label.font()
    f.setBold(True)
    label.setFont(f)
    return label


def muted(text: str = "", wrap: bool = True) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(wrap)
    # A palette role, not a colour: it follows light/dark switches by itself.
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


class InfoGrid(QWidget):
    """Two columns of label: value, with selectable values (people copy numbers)."""

    def __init__(self, keys: list[str], parent=None):
        super().__init__(parent)
        lay = QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setHorizontalSpacing(12)
        lay.setVerticalSpacing(3)
        self.values: dict[str, QLabel] = {}
        for i, k in enumerate(keys):
            key = QLabel(k + ":")
            key.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            val = QLabel("—")
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            val.setWordWrap(True)
            lay.addWidget(key, i, 0)
            lay.addWidget(val, i, 1)
            self.values[k] = val
        lay.setColumnStretch(1, 1)

    def set(self, key: str, value: str) -> None:
        self.values[key].setText(value)

    def clear(self) -> None:
        for v in self.values.values():
            v.setText("—")


class Banner(QFrame):
    """A dismissible message strip (run failures): the window stays usable, nothing is modal."""

    sig_dismissed = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setObjectName("banner")
        lay = QVBoxLayout(self)
        top = QHBoxLayout()
        self.title = QLabel()
        f = self.title.font()
        f.setBold(True)
        self.title.setFont(f)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.title, 1)
        self.action = QPushButton()
        self.action.setObjectName("banner-action")
        self.action.hide()
        self.action.clicked.connect(self._act)
        self._callback = None
        top.addWidget(self.action)
        self.toggle = QPushButton("Show log")
        self.toggle.setCheckable(True)
        self.toggle.toggled.connect(self._toggle_log)
        top.addWidget(self.toggle)
        close = QPushButton("Dismiss")
        close.clicked.connect(self.dismiss)
        top.addWidget(close)
        lay.addLayout(top)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.hint)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFont("monospace"))
        self.log.setMaximumHeight(160)
        self.log.hide()
        lay.addWidget(self.log)
        self._restyle()
        self.hide()

    def show_message(self, title: str, hint: str = "", log_tail: str = "", action: str = "",
                     callback=None) -> None:
        """``action``/``callback``: a button that takes the user where the fix is ("Go to …")."""
        self.title.setText(title)
        self.hint.setText(hint)
        self.hint.setVisible(bool(hint))
        self.log.setPlainText(log_tail)
        self.toggle.setVisible(bool(log_tail))
        self.toggle.setChecked(False)
        self._callback = callback
        self.action.setText(action)
        self.action.setVisible(bool(action and callback))
        self.show()

    def _act(self):
        if self._callback is not None:
            self._callback()

    def dismiss(self):
        self.hide()
        self.sig_dismissed.emit()

    def _toggle_log(self, on: bool):
        self.log.setVisible(on)
        self.toggle.setText("Hide log" if on else "Show log")

    def _restyle(self):
        self.setStyleSheet(f"QFrame#banner {{ border: 1px solid {theme.SERIES['limit']}; border-radius: 4px; }}")

    def changeEvent(self, e):
        if e.type() == QEvent.Type.PaletteChange:
            self._restyle()
        super().changeEvent(e)


class PlotSlot(QWidget):
    """Holds a plot's place until pyqtgraph is loaded (see studio/plots.py)."""

    def __init__(self, min_height: int = 120, parent=None):
        super().__init__(parent)
        self.setMinimumHeight(min_height)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.lay = QVBoxLayout(self)
        self.lay.setContentsMargins(0, 0, 0, 0)
        self.plot = None

    def fill(self, plot) -> None:
        self.plot = plot
        self.lay.addWidget(plot)


class _Checked:
    """Shared part of the checked spin boxes: a valid range that typing may leave (the value stays
    as typed and is marked), while the arrows, keys and wheel stop at it."""

    def _init_checked(self, low, high, what: str):
        self.low, self.high, self.what = low, high, what
        self.valueChanged.connect(lambda _v: self._mark())

    def is_valid(self) -> bool:
        v = self.value()
        return self.low <= v <= self.high

    def problem(self) -> str:
        """'' when valid, else what is wrong ("Temperature must be between 0 and 2")."""
        return "" if self.is_valid() else f"{self.what} must be between {self.low:g} and {self.high:g}."

    def _mark(self):
        if self.is_valid():
            self.setStyleSheet("")
            self.setToolTip(getattr(self, "_tip", ""))
        else:
            self.setStyleSheet(f"{type(self).__bases__[-1].__name__} {{ border: 1px solid #d64545; "
                               "border-radius: 3px; }")
            super().setToolTip(self.problem())

    def setToolTip(self, tip: str) -> None:  # noqa: N802 - Qt's name
        self._tip = tip
        super().setToolTip(tip if self.is_valid() else self.problem())

    def stepBy(self, steps):  # noqa: N802 - Qt's name
        self.setValue(min(max(self.value() + steps * self.singleStep(), self.low), self.high))


class CheckedSpinBox(_Checked, QSpinBox):
    """A whole-number spin box that marks out-of-range input instead of changing it (−4 stays −4,
    shown as wrong, and whatever reads it asks ``is_valid()``)."""

    def __init__(self, low: int, high: int, what: str, parent=None):
        super().__init__(parent)
        self.setRange(-2_000_000_000, 2_000_000_000)
        self._init_checked(low, high, what)


class CheckedDoubleSpinBox(_Checked, QDoubleSpinBox):
    """The decimal spin box counterpart of CheckedSpinBox."""

    def __init__(self, low: float, high: float, what: str, decimals: int = 2, parent=None):
        super().__init__(parent)
        self.setDecimals(decimals)
        self.setRange(-1_000_000.0, 1_000_000.0)
        self._init_checked(low, high, what)


def compact(combo, chars: int = 10):
    """Let a combo box be narrower than its longest item (a QComboBox otherwise demands that width,
    and a narrow dock then cuts the form off or scrolls sideways). Returns the combo."""
    from PySide6.QtWidgets import QComboBox

    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo
