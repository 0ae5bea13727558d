"""Integer codes for the simulation state, shared by the physics and the observation builder.

Stored as small integers in NumPy arrays so masks and features are plain vectorised comparisons.
"""

from __future__ import annotations

# point_status values: an EMPTY slot holds no point; SERVED and MISSED slots stay visible until reused.
EMPTY, ACTIVE, SERVED, MISSED = 0, 1, 2, 3
# vehicle_target: IDLE, a point index 0..P-1, or P for the base.
IDLE = -1
