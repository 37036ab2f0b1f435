"""Tokenized examples as the Trainer reads them: a sequence over a memory-mapped Arrow dataset.

``Examples`` holds no token lists in Python: ``examples[i]`` reads one row, ``examples[[i, j]]``
(what a DataLoader asks through ``__getitems__``) reads a batch with one Arrow access. ``lengths``
and ``trained_counts`` are small numpy arrays, so the length-grouped sampler, the packer and the
estimator's workload plan never touch the token columns. Compares equal to a list of the same
``{"input_ids", "labels"}`` dicts (and to another Examples with the same rows).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

_COLUMNS = ["input_ids", "labels"]
_CHUNK = 1024  # rows read at a time when iterating


class Examples(Sequence):
    """``{"input_ids": [...], "labels": [...]}`` rows of a datasets.Dataset (``dataset``), in order.

    ``where(i)`` names the record (file and line) row ``i`` came from.
    """

    def __init__(self, dataset, lengths=None, trained=None, wheres=None):
        import numpy as np

        self.dataset = dataset.select_columns(_COLUMNS) if set(dataset.column_names) != set(_COLUMNS) else dataset
        n = len(self.dataset)
        self.lengths = np.asarray(lengths if lengths is not None else [], dtype=np.int64)
        self.trained_counts = np.asarray(trained if trained is not None else [], dtype=np.int64)
        if len(self.lengths) != n:
            self.lengths = np.asarray(dataset.data.column("length").to_numpy() if "length" in dataset.column_names
                                      else [len(x) for x in self.dataset["input_ids"]], dtype=np.int64)
        self._wheres = wheres

    @classmethod
    def empty(cls) -> Examples:
        import datasets

        from engine.data.encode import features

        return cls(datasets.Dataset.from_dict({k: [] for k in _COLUMNS},
                                              features=datasets.Features({k: features()[k] for k in _COLUMNS})))

    def __len__(self) -> int:
        return len(self.dataset)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.__getitems__(list(range(*key.indices(len(self)))))
        if isinstance(key, (list, tuple)):
            return self.__getitems__(list(key))
        if key < 0:
            key += len(self)
        if not 0 <= key < len(self):
            raise IndexError(key)
        return self.dataset[int(key)]

    def __getitems__(self, keys: list[int]) -> list[dict]:
        """A batch of rows with one Arrow read (torch's DataLoader calls this)."""
        if not keys:
            return []
        batch = self.dataset[[int(k) for k in keys]]
        return [{"input_ids": ids, "labels": labels} for ids, labels in zip(batch["input_ids"], batch["labels"])]

    def __iter__(self) -> Iterator[dict]:
        for start in range(0, len(self), _CHUNK):
            yield from self.__getitems__(list(range(start, min(start + _CHUNK, len(self)))))

    def __eq__(self, other) -> bool:
        if isinstance(other, (Examples, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None

    def __repr__(self) -> str:
        return f"Examples({len(self)} rows)"

    def __getstate__(self):  # DataLoader workers started by spawn: the Arrow data goes by its file path
        return {**self.__dict__, "_wheres": None}

    def where(self, i: int):
        """The Where (file, line or record) of row ``i``, or None when not recorded."""
        return self._wheres(i) if self._wheres is not None else None

    def num_tokens(self) -> int:
        return int(self.lengths.sum())

    def num_trained_tokens(self) -> int:
        return int(self.trained_counts.sum())
