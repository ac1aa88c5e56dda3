"""A synthetic token task with planted evidence: the two squares of text."""
from __future__ import annotations

import numpy as np
import torch

from .dataset import Dataset, stratified_split

__all__ = ["planted_tokens", "TOKEN_NAMES"]

#: evidence tokens of class 0 and class 1, distractors (both classes), then filler words
_EVIDENCE = (("awful", "dull", "boring"), ("great", "superb", "lovely"))
_DISTRACTORS = ("film", "actor", "plot")
_FILLER = tuple(f"w{i}" for i in range(32 - 1 - 6 - 3))
#: the vocabulary: id 0 is padding
TOKEN_NAMES = ("<pad>",) + _EVIDENCE[0] + _EVIDENCE[1] + _DISTRACTORS + _FILLER


def planted_tokens(n: int = 2000, length: int = 16, min_length: int = 8, seed: int = 0) -> Dataset:
    """Sequences of filler words with one planted evidence token (its class's) and one distractor.

    Like ``two_squares``: each sequence holds two special tokens at random positions; one decides the
    class (``awful``/``dull``/``boring`` -> 0, ``great``/``superb``/``lovely`` -> 1), the other
    (``film``/``actor``/``plot``) appears in both classes alike. Sequences are ``min_length`` to
    ``length`` tokens long, padded with id 0 at the end.

    Returns
    -------
    Dataset
        ``x`` (n, length) int64 token ids, ``y`` the class, per-sample extras ``informative_mask``
        (n, length) bool (the evidence token) and ``distractor_mask``; extra ``vocabulary`` (the names).
    """
    if n < 2:
        raise ValueError(f"n must be at least 2, got {n}")
    if not 2 <= min_length <= length:
        raise ValueError(f"need 2 <= min_length <= length, got min_length={min_length}, length={length}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2)
    first_filler = len(TOKEN_NAMES) - len(_FILLER)
    tokens = np.zeros((n, length), dtype=np.int64)
    informative = np.zeros((n, length), dtype=bool)
    distractor = np.zeros((n, length), dtype=bool)
    for i, label in enumerate(labels):
        size = rng.integers(min_length, length + 1)
        tokens[i, :size] = rng.integers(first_filler, len(TOKEN_NAMES), size=size)
        where, other = rng.choice(size, 2, replace=False)
        tokens[i, where] = 1 + 3 * label + rng.integers(3)
        tokens[i, other] = 7 + rng.integers(3)
        informative[i, where], distractor[i, other] = True, True
    train_index, test_index = stratified_split(labels, 0.2, seed)
    return Dataset(
        x=torch.from_numpy(tokens), y=torch.from_numpy(labels.astype(np.int64)), classes=("negative", "positive"),
        name="planted_tokens", spec={"loader": "planted_tokens", "n": n, "length": length, "min_length": min_length,
                                     "seed": seed},
        extras={"vocabulary": TOKEN_NAMES},
        sample_extras={"informative_mask": torch.from_numpy(informative), "distractor_mask": torch.from_numpy(distractor)},
        train_index=train_index, test_index=test_index,
    )
