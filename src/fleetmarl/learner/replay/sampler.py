"""Which transitions a minibatch takes: uniform, or prioritized replay through a vectorised sum tree.

Prioritized replay (``ENABLE_PRIORITIZED_REPLAY``): priorities ``(|td| + PER_EPSILON) ** PER_ALPHA`` in a
sum tree held in one float64 array; updates and stratified sampling are vectorised over the batch, one
NumPy operation per tree level. New transitions get the largest priority seen so far. Importance
weights ``(size * P(i)) ** -beta`` are divided by their largest possible value (from the smallest
priority in the buffer); ``beta`` grows by ``PER_BETA_INCREMENT`` per draw.

Determinism: draws come only from the sampler's own ``numpy.random.Generator``; internal tree nodes
are always recomputed as left + right (never incremented), so rebuilding the tree from saved leaves
gives bit-identical sums and a restored sampler draws the same indices as one that was never saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fleetmarl.config import Config


class SumTree:
    """Binary sum tree over ``capacity`` leaves in one array: node i has children 2i and 2i+1, leaves
    start at ``self.base`` (a power of two). All operations take arrays of leaves."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.base = 1 << max(0, (capacity - 1).bit_length())
        self.nodes = np.zeros(2 * self.base, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves (the root)."""
        return float(self.nodes[1])

    def leaves(self, count: int | None = None) -> np.ndarray:
        """A view of the first ``count`` leaves (all by default): writing it needs :meth:`rebuild`."""
        return self.nodes[self.base:self.base + (self.capacity if count is None else count)]

    def set(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves and recompute their ancestors, one level at a time for the whole batch."""
        nodes = self.nodes
        pos = np.asarray(indices, dtype=np.int64) + self.base
        nodes[pos] = values  # with duplicate indices the last value wins, like sequential writes
        pos = np.unique(pos >> 1)
        while pos[0] >= 1:
            nodes[pos] = nodes[2 * pos] + nodes[2 * pos + 1]
            if pos[0] == 1:
                break
            pos = np.unique(pos >> 1)

    def rebuild(self) -> None:
        """Recompute every internal node from the leaves (after a restore): the same sums as :meth:`set`."""
        nodes = self.nodes
        width = self.base
        while width > 1:
            parents = np.arange(width // 2, width)
            nodes[parents] = nodes[2 * parents] + nodes[2 * parents + 1]
            width //= 2

    def find(self, targets: np.ndarray) -> np.ndarray:
        """Leaf index for each prefix-sum target in [0, total)."""
        nodes = self.nodes
        idx = np.ones(len(targets), dtype=np.int64)
        remaining = np.array(targets, dtype=np.float64)
        while idx[0] < self.base:
            left = nodes[2 * idx]
            go_right = remaining >= left
            remaining = np.where(go_right, remaining - left, remaining)
            idx = 2 * idx + go_right
        return idx - self.base


class ReplaySampler:
    """The draw of minibatch slots and its state: the generator, and with PER the tree, beta and the
    largest priority seen (all saved in a checkpoint's head)."""

    def __init__(self, config: Config, capacity: int, seed: int) -> None:
        self.prioritized = bool(config.ENABLE_PRIORITIZED_REPLAY)
        self.alpha = float(config.PER_ALPHA)
        self.epsilon = float(config.PER_EPSILON)
        self.beta = float(config.PER_BETA)
        self.beta_increment = float(config.PER_BETA_INCREMENT)
        self.max_priority = 1.0
        self.rng = np.random.default_rng(seed)
        self.tree = SumTree(capacity) if self.prioritized else None

    def draw(self, size: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Slots among the ``size`` stored and their importance weights (B,) float32 (ones when uniform)."""
        if self.tree is None:
            return self.rng.integers(0, size, size=batch_size), np.ones(batch_size, dtype=np.float32)
        return self._draw_prioritized(size, batch_size)

    def _draw_prioritized(self, size: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """One draw per equal segment of the priority mass (stratified: lower variance than i.i.d.)."""
        tree = self.tree
        assert tree is not None
        total = tree.total
        segment = total / batch_size
        targets = (np.arange(batch_size) + self.rng.random(batch_size)) * segment  # stratified
        indices = np.minimum(tree.find(np.minimum(targets, np.nextafter(total, 0.0))), size - 1)
        leaves = tree.leaves(size)
        probs = leaves[indices] / total
        smallest = leaves.min() / total
        self.beta = min(1.0, self.beta + self.beta_increment)
        weights = (size * probs) ** (-self.beta) / (size * smallest) ** (-self.beta)
        return indices, weights.astype(np.float32)

    def added(self, slots: np.ndarray) -> None:
        """New transitions in ``slots`` start at the largest priority seen, so each is replayed soon."""
        if self.tree is not None:
            self.tree.set(slots, np.full(len(slots), self.max_priority ** self.alpha))

    def update(self, indices: Any, td_errors: Any) -> None:
        """New priorities from |TD errors| (B,); torch tensors are copied to the host here, once."""
        if self.tree is None:
            return
        if isinstance(indices, torch.Tensor):
            indices = indices.detach().cpu().numpy()
        if isinstance(td_errors, torch.Tensor):
            td_errors = td_errors.detach().to(torch.float64).cpu().numpy()
        raw = np.abs(np.asarray(td_errors, dtype=np.float64)) + self.epsilon
        self.max_priority = max(self.max_priority, float(raw.max()))
        self.tree.set(np.asarray(indices, dtype=np.int64), raw ** self.alpha)

    def restore(self, rng_state: dict[str, Any], beta: float, max_priority: float,
                priorities: np.ndarray | None, size: int) -> None:
        """Continue exactly where a saved sampler stopped; ``priorities`` None (saved without PER) starts
        every one of the ``size`` transitions at the same priority."""
        self.rng.bit_generator.state = rng_state
        self.beta = float(beta)
        self.max_priority = float(max_priority)
        if self.tree is not None:
            self.tree.nodes[:] = 0.0
            if priorities is not None:
                self.tree.leaves(size)[:] = priorities
            else:
                self.tree.leaves(size)[:] = self.max_priority ** self.alpha
            self.tree.rebuild()
