"""Saving and restoring a batched environment's NumPy generator, for exact resume.

Both batched environments (the fleet and any PettingZoo one) keep one ``np.random.Generator``; a
checkpoint stores its bit-generator state as plain Python values so ``torch.load(weights_only=True)``
can read it back.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np


def generator_state(rng: np.random.Generator) -> dict[str, Any]:
    """The generator's state as plain Python values (a copy: later draws do not change it)."""
    return copy.deepcopy(rng.bit_generator.state)


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A generator that continues exactly where the one :func:`generator_state` read stopped."""
    rng = np.random.default_rng()
    rng.bit_generator.state = copy.deepcopy(dict(state))
    return rng
