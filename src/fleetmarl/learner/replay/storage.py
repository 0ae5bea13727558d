"""The replay ring: transitions in slots, every observation frame stored once, safe to save in the background.

Why raw observations: the system this replaces stored Transformer embeddings computed at acting time,
so the Transformer never received a gradient and replayed embeddings went stale. Here the storage keeps
what the environment returned (compactly, :mod:`.codecs`) and the networks re-encode it at every update.

Why each observation is stored once: the next observation of step t is the observation of step t+1,
except where an episode ends. :meth:`ReplayStorage.add` keeps the newest ``next_obs`` *pending*; when the
following ``add`` starts from the same observation (row by row) the transition just points at the new
transition's frame, otherwise the pending frame moves to a small *final* store. ``next_ref[slot]`` says
where a transition's next observation is:

- ``>= 0``: the global index g of the transition that continues it (its frame, in slot g % capacity);
- ``< 0`` (not ``PENDING``): final frame f = -1 - next_ref, in final slot f % capacity;
- ``PENDING``: one of the newest transitions, whose next frame is in ``pending``.

Transition g (the g-th ever added) lives in slot ``g % capacity``. A background save *pins* the ranges
of transitions it will read later; should the ring reach a pinned range (or reuse a final frame it
refers to) before the save has read it, ``add`` has the pin's reader copy it first (copy on write), so a
save always writes the state of its snapshot.

Why the dispatch prior's choice is stored with each frame (``prior``): the policy acts on its logits plus
a bonus on the prior dispatcher's choice, so every update needs that choice on its batch's observations
and next observations. Asking the dispatcher there costs O(A x N) per sample, and greedy_chain more (A x
A x N): at 40 vehicles it was a third of an update. It is a pure function of the frame, so it is asked
once, when the frame is stored, of the frame as the learner reads it back (the same choice, bit for bit).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

from fleetmarl.envs.spaces import ObservationDims
from fleetmarl.learner.replay.codecs import CODECS, FrameCodec, ViewFrameCodec, fitting_layout

NOT_TAUGHT = -1
"""``taught`` of a transition without a recorded teacher choice."""
PENDING = np.iinfo(np.int64).min
"""``next_ref`` of the newest transitions, whose next observation is still in the pending frames."""
PRIOR_KEY = "prior_choice"
"""frame field (A,) and observation key (n, A) of the dispatch prior's choice on the frame (module docstring)"""
PriorFn = Callable[[Mapping[str, np.ndarray]], np.ndarray]
"""the prior dispatcher: decoded frames (n, A, ...) -> its choices (n, A)"""
LAYOUTS = ("auto", *CODECS)


class Pin:
    """Transitions ``[first, end)`` a save will read later with ``read()``; ``copy`` is what ``add`` read
    before overwriting them (None while they are intact)."""

    __slots__ = ("first", "end", "read", "copy")

    def __init__(self, first: int, end: int, read: Callable[[], dict[str, Any]]) -> None:
        self.first, self.end, self.read = first, end, read
        self.copy: dict[str, Any] | None = None


def final_indices(refs: np.ndarray) -> np.ndarray:
    """The final-frame indices that the ``next_ref`` values ``refs`` refer to (links and pending left out)."""
    return -1 - refs[(refs < 0) & (refs != PENDING)]


class ReplayStorage:
    """Ring of ``capacity`` transitions with their observations stored once (module docstring).

    ``action_dim=None`` stores discrete actions (one int per agent); an int stores continuous actions
    of that many floats per agent. ``layout`` is ``"auto"`` (compact fleet frames when the first
    ``add`` has their structure, else plain), ``"fleet"`` or ``"plain"``. ``per_agent_dones`` stores a
    done flag per agent (B, A) instead of one per environment (B,): environments whose agents finish
    at different steps. ``view`` / ``vehicle_view`` > 0 store each vehicle's nearest points / other vehicles
    only where the frames have the fleet structure (layout ``"fleet_view"``: for networks that read no
    more, ``POINT_VIEW`` and ``VEHICLE_VIEW``);
    ``prior`` stores the dispatch prior's choice with every frame (module docstring).
    """

    def __init__(self, dims: ObservationDims, capacity: int, *, action_dim: int | None = None,
                 layout: str = "auto", per_agent_dones: bool = False, view: int = 0, vehicle_view: int = 0,
                 prior: PriorFn | None = None) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be 'auto', 'fleet' or 'plain', not {layout!r}")
        self.dims = dims
        self.capacity = c = int(capacity)
        self.action_dim = action_dim
        self.layout = layout
        self.view, self.vehicle_view = int(view), int(vehicle_view)
        self.prior = prior
        a = dims.num_agents
        self.shapes = {
            "state": (a, dims.state),
            "point_features": (a, dims.num_points, dims.point),
            "other_obs": (a, dims.other_rows, dims.other),
            "action_mask": (a, dims.num_actions),
        }
        self.total = 0
        """transitions ever added; transition g lives in slot g % capacity"""
        self.final_total = 0
        """frames ever moved to the final store; final frame f lives in its slot f % capacity"""
        self.codec: FrameCodec | None = None
        self.full_codec: FrameCodec | None = None
        """the codec whose frames decode to every point: what the prior dispatcher and a view read"""
        self.fields: dict[str, tuple[tuple[int, ...], Any]] = {}
        """the stored frame fields: the codec's, plus the prior's choice"""
        self.frames: dict[str, np.ndarray] = {}
        self.final: dict[str, np.ndarray] = {}
        action_shape = (c, a) if action_dim is None else (c, a, int(action_dim))
        self.actions = np.zeros(action_shape, dtype=np.int16 if action_dim is None else np.float32)
        # The teacher's choice on each step's observation, recorded at acting time: a stateful teacher
        # (the OR-Tools dispatcher keeps a plan per environment) cannot be asked again at update time.
        self.taught = None if action_dim is not None else np.full((c, a), NOT_TAUGHT, dtype=np.int16)
        self.rewards = np.zeros((c, a), dtype=np.float32)
        self.dones = np.zeros((c, a) if per_agent_dones else (c,), dtype=np.bool_)
        self.next_ref = np.zeros((c,), dtype=np.int64)
        self.pending: dict[str, np.ndarray] | None = None
        self._last_next: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
        """the latest add's next observations and their frames (:meth:`_encode_obs`)"""
        self.pending_first = 0
        self._pins: list[Pin] = []
        self._lock = threading.Lock()
        if layout != "auto":
            self.use_layout(layout)

    # ------------------------------------------------------------------ sizes
    @property
    def size(self) -> int:
        return min(self.total, self.capacity)

    @property
    def ptr(self) -> int:
        return self.total % self.capacity

    def __len__(self) -> int:
        return self.size

    def bytes_per_transition(self) -> int:
        """Bytes of RAM (and of a checkpoint) per stored transition, not counting the final frames at
        episode ends (one frame per episode, i.e. :meth:`frame_bytes` / MAX_NUM_STEPS more)."""
        per = self.frame_bytes() + self.actions[0].nbytes + self.rewards[0].nbytes + 1 + self.next_ref.itemsize
        if self.taught is not None:
            per += self.taught[0].nbytes
        return int(per)

    def frame_bytes(self) -> int:
        """Bytes of one stored observation frame (all agents)."""
        fields = self.fields or self._fields(self._codec("fleet_view" if self.view or self.vehicle_view else "fleet")
                                             if self.layout == "auto" else self._codec(self.layout))
        return int(sum(np.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in fields.values()))

    def _codec(self, name: str) -> FrameCodec:
        return CODECS[name](self.dims, self.view, self.vehicle_view)

    def _fields(self, codec: FrameCodec) -> dict[str, tuple[tuple[int, ...], Any]]:
        fields = dict(codec.fields)
        if self.prior is not None:
            fields[PRIOR_KEY] = ((self.dims.num_agents,), np.int16)
        return fields

    def use_layout(self, name: str) -> None:
        """Store frames with codec ``name`` from now on (empty frame and final stores)."""
        self.codec = self._codec(name)
        self.full_codec = self._codec("fleet") if name == "fleet_view" else self.codec
        self.layout = name
        self.fields = self._fields(self.codec)
        c = self.capacity
        # np.zeros maps untouched pages lazily: the final store costs memory only as episodes end.
        self.frames = {k: np.zeros((c, *shape), dtype=dtype) for k, (shape, dtype) in self.fields.items()}
        self.final = {k: np.zeros((c, *shape), dtype=dtype) for k, (shape, dtype) in self.fields.items()}

    def encode(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Frames (B, A, ...) of observations as stored, the prior's choice included. The prior and a view
        both read the full layout's frame decoded, as a batch of that layout would read it back."""
        assert self.codec is not None and self.full_codec is not None
        frames = self.full_codec.encode(obs)
        if self.prior is None and self.codec is self.full_codec:
            return frames
        decoded = self.full_codec.decode(frames)
        choice = None if self.prior is None else np.asarray(self.prior(decoded), dtype=np.int16)
        if isinstance(self.codec, ViewFrameCodec):
            frames = self.codec.cut(frames, decoded, choice)  # the prior's choice goes first in each view
        if choice is not None:
            frames[PRIOR_KEY] = choice
        return frames

    def forget_encoded(self) -> None:
        """Drop the previous add's next frames (:meth:`_encode_obs`): the ring was restored or rewritten."""
        self._last_next = None

    def _encode_obs(self, obs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:meth:`encode` of ``obs``, reusing the previous add's next frames when ``obs`` is that add's
        ``next_obs`` (every step but an episode's first): the prior and the view are asked once per frame."""
        if self._last_next is not None:
            raw, frames = self._last_next
            if raw.keys() == obs.keys() and all(np.array_equal(raw[k], obs[k]) for k in raw):
                return frames
        return self.encode(obs)

    def fill_prior(self) -> None:
        """Ask the prior of every stored frame: restored from a checkpoint written before its choice was
        stored. Such a checkpoint has a full layout ("fleet_view" always stored the choice)."""
        assert self.prior is not None and self.codec is not None and self.codec is self.full_codec
        for store, used in self.frame_stores():
            choices = store.setdefault(PRIOR_KEY, np.zeros((used, self.dims.num_agents), dtype=np.int16))
            for first in range(0, used, 4096):
                end = min(first + 4096, used)
                chunk = {k: v[first:end] for k, v in store.items() if k != PRIOR_KEY}
                choices[first:end] = self.prior(self.codec.decode(chunk))

    def decode(self, frames: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Observations (n, A, ...) from stored frames, with the prior's choice when one is stored."""
        assert self.codec is not None
        obs = self.codec.decode(frames)
        if PRIOR_KEY in frames:
            obs[PRIOR_KEY] = frames[PRIOR_KEY].astype(np.int64)
        return obs

    def frame_stores(self) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """(store, frames in use) of the frame ring, the final store and the pending frames."""
        yield self.frames, self.size
        yield self.final, min(self.final_total, self.capacity)
        if self.pending is not None:
            yield self.pending, self.total - self.pending_first

    # ------------------------------------------------------------------ writing
    def add(self, obs: Mapping[str, np.ndarray], actions: np.ndarray, rewards: np.ndarray,
            next_obs: Mapping[str, np.ndarray], dones: np.ndarray, taught: np.ndarray | None = None) -> np.ndarray:
        """Store one transition per environment: obs arrays (B, A, ...), actions (B, A) or (B, A, D),
        rewards (B, A), dones (B,) (or (B, A) with ``per_agent_dones``), and optionally the teacher's
        choices (B, A) on ``obs`` (discrete actions only). Returns the slots written."""
        actions = np.asarray(actions)
        count = actions.shape[0]
        if self.codec is None:
            self.use_layout(fitting_layout(self.dims, obs, next_obs, view=bool(self.view or self.vehicle_view)))
        enc_obs, enc_next = self._encode_obs(obs), self.encode(next_obs)
        if self.prior is not None or self.codec is not self.full_codec:  # else encoding is as cheap as a compare
            self._last_next = ({k: np.array(v, copy=True) for k, v in next_obs.items()}, enc_next)
        first, c = self.total, self.capacity
        slots = (first + np.arange(count)) % c
        with self._lock:
            self._resolve_pending(enc_obs, count)
            if self._pins and first + count > c:
                self._copy_pinned_before_overwrite(first - c, first - c + count)
            for key, value in enc_obs.items():
                self.frames[key][slots] = value
            self.actions[slots] = actions
            if self.taught is not None:
                self.taught[slots] = NOT_TAUGHT if taught is None else taught
            self.rewards[slots] = rewards
            self.dones[slots] = dones
            self.next_ref[slots] = PENDING
            self.pending = {k: v.copy() for k, v in enc_next.items()}
            self.pending_first = first
            self.total = first + count
        return slots

    def _resolve_pending(self, enc_obs: dict[str, np.ndarray], count: int) -> None:
        """Point the previous add's transitions at this add's frames where they are the same observation;
        move the others' next frames to the final store."""
        if self.pending is None:
            return
        waiting = self.total - self.pending_first
        rows = np.arange(waiting)
        same = np.zeros(waiting, dtype=bool)
        if waiting == count:
            same[:] = True
            for key, value in enc_obs.items():
                same &= (value.reshape(count, -1) == self.pending[key].reshape(waiting, -1)).all(axis=1)
        slots = (self.pending_first + rows) % self.capacity
        self.next_ref[slots[same]] = self.total + rows[same]
        moved = rows[~same]
        if len(moved):
            finals = self.final_total + np.arange(len(moved))
            if self._pins:
                self._copy_pinned_for_finals(finals)
            for key, value in self.pending.items():
                self.final[key][finals % self.capacity] = value[moved]
            self.next_ref[slots[~same]] = -1 - finals
            self.final_total += len(moved)
        self.pending = None

    # ------------------------------------------------------------------ reading
    def global_index(self, slots: np.ndarray) -> np.ndarray:
        """Global transition index of live slots."""
        newest = self.total - 1
        return newest - (newest - slots) % self.capacity

    def successors(self, slots: np.ndarray) -> np.ndarray:
        """Slot of the transition that continues each of ``slots`` in its environment (always newer, so
        still stored), or -1 where none is stored: an episode's end, or one of the newest transitions."""
        ref = self.next_ref[slots]
        return np.where(ref >= 0, ref % self.capacity, -1)

    def next_frames(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        """Encoded frames of the next observations of ``slots``."""
        c = self.capacity
        ref = self.next_ref[slots]
        linked = ref >= 0
        source = np.where(linked, ref % c, slots)
        nxt = {k: v[source] for k, v in self.frames.items()}
        if not linked.all():
            final = ~linked & (ref != PENDING)
            if final.any():
                fslots = (-1 - ref[final]) % c
                for key, value in self.final.items():
                    nxt[key][final] = value[fslots]
            pending = ref == PENDING
            if pending.any():
                assert self.pending is not None
                rows = self.global_index(slots[pending]) - self.pending_first
                for key, value in self.pending.items():
                    nxt[key][pending] = value[rows]
        return nxt

    # ------------------------------------------------------------------ pins (copy on write)
    def pin(self, ranges: list[tuple[int, int]], reader: Callable[[int, int], dict[str, Any]]) -> list[Pin]:
        """Guard transitions ``[first, end)`` of each range until :meth:`unpin`: ``reader(first, end)``
        copies them, called by :meth:`read_pinned` or, if the ring gets there first, by ``add``."""
        pins = [Pin(first, end, lambda first=first, end=end: reader(first, end)) for first, end in ranges]
        with self._lock:
            self._pins.extend(pins)
        return pins

    def unpin(self, pins: list[Pin]) -> None:
        """Stop guarding ``pins`` (those not read yet)."""
        with self._lock:
            for pin in pins:
                if pin in self._pins:
                    self._pins.remove(pin)

    def read_pinned(self, pin: Pin) -> dict[str, Any]:
        """The pinned transitions as they were when pinned; unpins them."""
        payload = pin.read()  # outside the lock: the training loop goes on
        with self._lock:
            if pin.copy is not None:  # add() overwrote it meanwhile; its copy was taken before that
                payload = pin.copy
            if pin in self._pins:
                self._pins.remove(pin)
        return payload

    def _copy_pinned_before_overwrite(self, first: int, end: int) -> None:
        """Called with the lock held: transitions [first, end) are about to be overwritten."""
        for pin in self._pins:
            if pin.copy is None and pin.first < end and first < pin.end:
                pin.copy = pin.read()

    def _copy_pinned_for_finals(self, finals: np.ndarray) -> None:
        """Called with the lock held: final slots of ``finals`` are about to be reused."""
        reused = finals - self.capacity
        if reused.max() < 0:
            return
        for pin in self._pins:
            if pin.copy is None:
                held = final_indices(self.next_ref[np.arange(pin.first, pin.end) % self.capacity])
                if np.isin(held, reused).any():
                    pin.copy = pin.read()
