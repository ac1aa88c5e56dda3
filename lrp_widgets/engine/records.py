"""Relevance recorded at each call of an explanation, and its per-sample sum (the conservation table).

Each call's relevance at its inputs is summed per sample as it is recorded, in the relevance pass, and
the tensors themselves are kept only where the caller asks for them (``explain(..., layers=True)``).
Otherwise every intermediate relevance of the pass would stay alive until ``explain`` returns (~10 MB
for the tiny ViT at batch 32, far more for a large CNN); now each goes as soon as the pass no longer
needs it. (Summing while the tensor is fresh in the cache measured no faster than summing after the
pass: the sums are small, their cost is the call per tensor.)
"""
from __future__ import annotations

import torch

__all__ = ["Records", "Recorder", "per_sample_sum"]


def per_sample_sum(tensors, batch_dim: int = 0) -> torch.Tensor:
    """The sum per sample of a tensor or a tuple of tensors whose samples lie along ``batch_dim``."""
    # a plain loop, not sum(generator) from 0: one tensor op fewer per record (a graph has dozens of records)
    total = None
    for t in tensors if isinstance(tensors, tuple) else (tensors,):
        if t.dim() > 1:  # over the other axes at once: flatten(1) would copy a transposed record first
            t = t.sum([d for d in range(t.dim()) if d != batch_dim])
        total = t if total is None else total + t
    return total


class Records:
    """Call index -> (call name, per-sample relevance sum), and the relevance itself if ``keep``."""

    __slots__ = ("keep", "sums", "tensors")

    def __init__(self, keep: bool):
        self.keep = keep
        self.sums: dict[int, tuple] = {}
        self.tensors: dict[int, object] = {}

    def add(self, index: int, name: str, tensors, batch_dim: int = 0) -> None:
        """Record the relevance ``tensors`` (one, or a tuple: one per input) of call ``index``."""
        self.sums[index] = (name, per_sample_sum(tensors, batch_dim))
        if self.keep:
            self.tensors[index] = (name, tensors)

    def stage_sums(self) -> list:
        """``(name, per-sample sum)`` of every record, from the output side to the input side."""
        return [self.sums[index] for index in sorted(self.sums, reverse=True)]

    def layers(self) -> list:
        """``(name, relevance)`` of every kept record, in forward order."""
        return [self.tensors[index] for index in sorted(self.tensors)]


class Recorder:
    """A post-hook of an autograd node: records the node's gradient at its input ``position`` as the relevance
    of call ``index`` (for calls whose rule is autograd's own backward: the moves of a traced graph)."""

    __slots__ = ("name", "index", "records", "position")
    kind = "operation"  # for code that lists a session's calls by kind

    def __init__(self, name: str, index: int, records: Records, position: int = 0):
        self.name, self.index, self.records, self.position = name, index, records, position

    def __call__(self, grad_inputs, grad_outputs):
        if grad_inputs[self.position] is not None:  # (every rule returns tensors; undefined only if one did not)
            self.records.add(self.index, self.name, grad_inputs[self.position])
