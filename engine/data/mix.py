"""Mixing several sources by weight (``data.sources``): one order, for SFT and preference data.

Both pipelines mix the same way: ``datasets.interleave_datasets`` over one small index dataset per
source (row numbers only, never the examples themselves), with probabilities proportional to the
sources' weights, the run's seed and ``data.mix_stopping``. Only the sizes matter to the order,
so SFT (``pipeline._mix``: positions of the kept tokenized examples) and preference data
(``preference``: TRL's rows in memory) share this one function and get the same interleaving a
direct ``interleave_datasets`` call over the data would.
"""

from __future__ import annotations

from engine.data.errors import DataError

MIX_STOPPING = ("first_exhausted", "all_exhausted")


def interleave_order(sizes: list[int], weights: list[float], seed: int, stopping: str):
    """(source, row) of every example of the mix, in training order, as two numpy int arrays.

    ``sizes``: rows per source (each > 0); ``weights``: positive, relative (probabilities are
    ``weight / sum(weights)``); ``stopping``: ``first_exhausted`` (stop when a source runs out)
    or ``all_exhausted`` (oversample until every source has been seen whole), as in
    ``datasets.interleave_datasets``. Raises DataError (field data.mix_stopping) for another value.
    """
    import datasets
    import numpy as np

    if stopping not in MIX_STOPPING:
        raise DataError(f"unknown data.mix_stopping '{stopping}'", field="data.mix_stopping",
                        hint=f"Use one of {', '.join(MIX_STOPPING)}.")
    index = [datasets.Dataset.from_dict({"s": np.full(n, s, dtype=np.int32), "i": np.arange(n, dtype=np.int64)})
             for s, n in enumerate(sizes)]
    total = sum(weights)
    mixed = datasets.interleave_datasets(index, probabilities=[w / total for w in weights], seed=seed,
                                         stopping_strategy=stopping)
    s_col = np.asarray(mixed.data.column("s").to_numpy() if mixed._indices is None else mixed["s"][:])
    i_col = np.asarray(mixed.data.column("i").to_numpy() if mixed._indices is None else mixed["i"][:])
    return s_col, i_col
