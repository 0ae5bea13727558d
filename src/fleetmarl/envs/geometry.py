"""The one distance formula used by the physics and the action mask.

Both must compute travel times with the very same floating-point operations: the mask promises that a
point can be reached by its deadline, and the physics then checks the arrival time against it.
"""

from __future__ import annotations

import numpy as np


def planar_distance(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.sqrt(dx * dx + dy * dy)
