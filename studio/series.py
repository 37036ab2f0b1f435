"""Growable (step, value) arrays for the live plots, with an incremental smoothed copy.

Appending is amortised O(1) (capacity doubles), so a 10,000-step run costs nothing per event;
the plots read views of the filled part at 10 Hz. The smoothed copy is TensorBoard's debiased
EMA, updated point by point and recomputed in full only when the weight changes.
"""

from __future__ import annotations

from studio.lazy import np


class Series:
    def __init__(self, capacity: int = 256):
        self._capacity = capacity
        self.x = self.y = self.s = None  # allocated by the first append (numpy loads late)
        self.n = 0
        self.weight = 0.0
        self._ema = 0.0
        self._debias = 1.0

    def __len__(self) -> int:
        return self.n

    def clear(self) -> None:
        self.n = 0
        self._ema, self._debias = 0.0, 1.0

    def append(self, x: float, y: float) -> None:
        if self.n and x <= self.x[self.n - 1]:
            self.truncate_before(x)  # a resumed run repeats steps: its new values replace the old
        if self.x is None:
            self.x, self.y, self.s = (np.empty(self._capacity) for _ in range(3))
        if self.n == len(self.x):
            cap = 2 * len(self.x)
            for name in ("x", "y", "s"):
                arr = np.empty(cap)
                arr[: self.n] = getattr(self, name)[: self.n]
                setattr(self, name, arr)
        self.x[self.n] = x
        self.y[self.n] = y
        self.s[self.n] = self._smooth(y)
        self.n += 1

    def _smooth(self, y: float) -> float:
        w = self.weight
        self._ema = self._ema * w + (1 - w) * y
        self._debias *= w
        return self._ema / (1 - self._debias) if self._debias < 1 else y

    def truncate_before(self, x: float) -> None:
        """Drop the points at x and after."""
        if self.x is None:
            return
        keep = int(np.searchsorted(self.x[: self.n], x, side="left"))
        self.n = keep
        self.set_weight(self.weight)

    def set_weight(self, w: float) -> None:
        self.weight = float(min(max(w, 0.0), 0.999))
        self._ema, self._debias = 0.0, 1.0
        for i in range(self.n):
            self.s[i] = self._smooth(self.y[i])

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        if self.x is None:
            return np.zeros(0), np.zeros(0)
        return self.x[: self.n], self.y[: self.n]

    def smoothed(self) -> tuple[np.ndarray, np.ndarray]:
        if self.x is None:
            return np.zeros(0), np.zeros(0)
        return self.x[: self.n], self.s[: self.n]

    def last(self):
        return float(self.y[self.n - 1]) if self.n else None
