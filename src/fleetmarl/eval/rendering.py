"""Draw one episode: the map, the task points and each vehicle's path (``fleetmarl render``).

The picture is built from the *observations* only (the documented columns of
:mod:`fleetmarl.envs.spaces`: positions relative to the base, point status and priority), never from
the environment's private arrays. So whatever the environment does inside, a picture shows exactly what
the agents were told, and the renderer needs nothing from the environment beyond its public contract.

Coordinates are metres relative to the base (the base at the origin), so the axes read as distances.
A task-point slot is reused when a new point arrives in ``full``; a slot's *visit* (one point) starts when
it turns active and ends when it is served, missed or emptied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fleetmarl.config import Config
from fleetmarl.errors import UserError
from fleetmarl.eval.plotting import pyplot, save_figure

BatchPolicy = Callable[[dict[str, np.ndarray]], np.ndarray]
PRIORITY_COLOURS = {1: "#d62728", 2: "#ff7f0e", 3: "#1f77b4"}  # high red, medium orange, low blue
VEHICLE_COLOURS = ("#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#000000")
VEHICLE_MARKER = "D"  # a diamond, so a vehicle never looks like a served point
MAX_GIF_FRAMES = 60
GIF_DPI = 80  # about 510x450 pixels: readable, and a 60-frame GIF stays well under a megabyte


@dataclass
class PointVisit:
    """One task point from its appearance to its end (served, missed, or still open at the end)."""

    slot: int
    x: float
    y: float
    priority: int
    samples: float
    start: int
    end: int
    outcome: str  # "served", "missed", "open" (still waiting at the end) or "unknown"


@dataclass
class EpisodeTrace:
    """Everything a picture of one episode needs, in metres relative to the base."""

    map_size: float
    step_seconds: float
    vehicles: np.ndarray  # (T+1, N_agents, 2)
    fast: np.ndarray  # (N_agents,) bool: the fastest vehicle class
    points: list[PointVisit] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return self.vehicles.shape[0] - 1


# ---------------------------------------------------------------------- recording
def record_episode(config: Config, policy: BatchPolicy, seed: int) -> EpisodeTrace:
    """Run one seeded episode with ``policy`` and keep what the map needs after every step."""
    from fleetmarl.envs import BatchedSamplingEnv
    from fleetmarl.envs.spaces import STATE

    env = BatchedSamplingEnv(config, num_envs=1)
    obs = env.reset(seed=seed)
    frames = [_snapshot(obs, config)]
    reward = 0.0
    infos: dict = {}
    for _ in range(config.MAX_NUM_STEPS):
        obs, rewards, terminated, truncated, infos = env.step(np.asarray(policy(obs)))
        reward += float(np.sum(rewards))
        ended = bool(np.any(terminated) or np.any(truncated))
        frames.append(_snapshot(infos["final_obs"] if ended and "final_obs" in infos else obs, config))
    metrics = {name: float(np.asarray(v).reshape(-1)[0]) for name, v in infos.get("episode", {}).items()}
    metrics["reward"] = reward
    vehicles = np.stack([f["vehicles"] for f in frames])
    speed = np.asarray(frames[0]["state"][:, STATE["speed"]])
    return EpisodeTrace(map_size=config.MAP_SIZE, step_seconds=config.STEP_SECONDS, vehicles=vehicles,
                        fast=speed >= speed.max() - 1e-6, points=_point_visits(frames), metrics=metrics)


def _snapshot(obs: dict[str, np.ndarray], config: Config) -> dict[str, np.ndarray]:
    """Positions and point status of environment 0, read from the documented observation columns."""
    from fleetmarl.envs.spaces import POINT, STATE

    half = config.MAP_SIZE / 2.0
    state = np.asarray(obs["state"])[0]  # (A, S)
    points = np.asarray(obs["point_features"])[0, 0]  # (P, F): agent 0's view; positions are absolute
    status = np.zeros(points.shape[0], dtype=np.int8)  # 0 empty, 1 active, 2 served, 3 missed
    for code, column in ((1, "active"), (2, "served"), (3, "missed")):
        status[points[:, POINT[column]] > 0.5] = code
    priority = 1 + np.argmax(points[:, [POINT["priority_1"], POINT["priority_2"], POINT["priority_3"]]], axis=1)
    return {
        "state": state,
        "vehicles": state[:, [STATE["x"], STATE["y"]]] * half,
        "points": points[:, [POINT["x"], POINT["y"]]] * half,
        "status": status,
        "priority": priority,
        "samples": points[:, POINT["samples"]] * config.POINT_SAMPLES_MAX,
    }


def _point_visits(frames: list[dict[str, np.ndarray]]) -> list[PointVisit]:
    """Split each slot's history into visits: a new one starts when the slot turns active or moves."""
    visits: list[PointVisit] = []
    num_slots = frames[0]["status"].shape[0]
    last = len(frames) - 1
    for slot in range(num_slots):
        open_visit: PointVisit | None = None
        for t, frame in enumerate(frames):
            status = int(frame["status"][slot])
            x, y = (float(v) for v in frame["points"][slot])
            moved = open_visit is not None and (abs(open_visit.x - x) > 1e-3 or abs(open_visit.y - y) > 1e-3)
            if open_visit is not None and (status != 1 or moved):
                open_visit.end = t
                # Emptied or replaced without a served/missed step in between: we cannot tell, so say so.
                open_visit.outcome = {2: "served", 3: "missed"}.get(status, "unknown")
                visits.append(open_visit)
                open_visit = None
            if status == 1 and open_visit is None:
                open_visit = PointVisit(slot, x, y, int(frame["priority"][slot]), float(frame["samples"][slot]),
                                        start=t, end=last, outcome="open")
        if open_visit is not None:
            visits.append(open_visit)
    return visits


# ---------------------------------------------------------------------- drawing
def render_episode(config: Config, policy: BatchPolicy, seed: int, output: str | Path, *, title: str = "",
                   fps: int = 8, every: int | None = None) -> Path:
    """Record one episode and write it as a still (.png/.svg/.pdf) or an animation (.gif)."""
    trace = record_episode(config, policy, seed)
    output = Path(output)
    if output.suffix.lower() == ".gif":
        return draw_animation(trace, output, title=title, fps=fps, every=every)
    return draw_episode(trace, output, title=title)


def draw_episode(trace: EpisodeTrace, output: Path, *, title: str = "") -> Path:
    """The whole episode on one map: every point with its outcome, every vehicle's full path."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.8, 7.0))
    _draw_map(ax, trace)
    for visit in trace.points:
        _draw_point(ax, visit, visit.outcome)
    for agent in range(trace.vehicles.shape[1]):
        path = trace.vehicles[:, agent]
        colour = _vehicle_colour(agent)
        ax.plot(path[:, 0], path[:, 1], color=colour, linewidth=1.6, alpha=0.85,
                linestyle="-" if trace.fast[agent] else "--", zorder=3)
        ax.plot(*path[-1], marker=VEHICLE_MARKER, markersize=8, color=colour, markeredgecolor="black", zorder=4)
    _legend(ax, trace)
    ax.set_title(_title(title, trace), fontsize="medium")
    fig.tight_layout()
    return save_figure(fig, output)


def draw_animation(trace: EpisodeTrace, output: Path, *, title: str = "", fps: int = 8,
                   every: int | None = None) -> Path:
    """An animated GIF: points appear, get served or missed, vehicles leave trails."""
    from matplotlib.animation import FuncAnimation, PillowWriter

    plt = pyplot()
    every = every or max(1, int(np.ceil(trace.steps / MAX_GIF_FRAMES)))
    steps = list(range(0, trace.steps + 1, every))
    if steps[-1] != trace.steps:
        steps.append(trace.steps)
    if len(steps) < 2:
        raise UserError(f"an episode of {trace.steps} steps is too short to animate; write a .png instead")
    fig, ax = plt.subplots(figsize=(5.8, 6.0))
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.09, top=0.9)

    def frame(t: int) -> None:
        ax.clear()
        _draw_map(ax, trace)
        for visit in trace.points:
            if visit.start <= t:
                _draw_point(ax, visit, visit.outcome if t >= visit.end else "open")
        for agent in range(trace.vehicles.shape[1]):
            path = trace.vehicles[: t + 1, agent]
            colour = _vehicle_colour(agent)
            ax.plot(path[:, 0], path[:, 1], color=colour, linewidth=1.3, alpha=0.7,
                    linestyle="-" if trace.fast[agent] else "--")
            ax.plot(*path[-1], marker=VEHICLE_MARKER, markersize=9, color=colour, markeredgecolor="black", zorder=4)
        seconds = int(t * trace.step_seconds)
        ax.set_title(f"{title}\nt = {seconds // 60:02d}:{seconds % 60:02d} (step {t}/{trace.steps})".strip(),
                     fontsize="small")

    animation = FuncAnimation(fig, frame, frames=steps, interval=1000 / fps)
    try:
        animation.save(str(output), writer=PillowWriter(fps=fps), dpi=GIF_DPI)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
    return output


def _draw_map(ax, trace: EpisodeTrace) -> None:
    half = trace.map_size / 2.0
    margin = trace.map_size * 0.03
    ax.set_xlim(-half - margin, half + margin)
    ax.set_ylim(-half - margin, half + margin)
    ax.set_aspect("equal")
    ax.add_patch(_square(half))
    ax.plot(0, 0, marker="s", markersize=13, color="black", zorder=5)
    ax.annotate("base", (0, 0), textcoords="offset points", xytext=(8, -14), fontsize="small")
    ax.set_xlabel("metres east of the base")
    ax.set_ylabel("metres north of the base")
    ax.grid(alpha=0.2)


def _square(half: float):
    from matplotlib.patches import Rectangle

    return Rectangle((-half, -half), 2 * half, 2 * half, fill=False, edgecolor="grey", linewidth=1.0)


def _draw_point(ax, visit: PointVisit, outcome: str) -> None:
    colour = PRIORITY_COLOURS.get(visit.priority, "grey")
    size = 30 + 14 * visit.samples
    if outcome == "served":
        ax.scatter(visit.x, visit.y, s=size, color=colour, edgecolors="black", linewidths=0.5, zorder=2)
    elif outcome == "missed":
        ax.scatter(visit.x, visit.y, s=size, color=colour, marker="X", linewidths=0.5, zorder=2)
    else:
        ax.scatter(visit.x, visit.y, s=size, facecolors="none", edgecolors=colour, linewidths=1.5, zorder=2)


def _vehicle_colour(agent: int) -> str:
    return VEHICLE_COLOURS[agent % len(VEHICLE_COLOURS)]


def _legend(ax, trace: EpisodeTrace) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=_vehicle_colour(a), linestyle="-" if trace.fast[a] else "--",
                      label=f"vehicle {a} ({'fast' if trace.fast[a] else 'slow'})")
               for a in range(trace.vehicles.shape[1])]
    handles += [Line2D([], [], linestyle="", marker="o", color=c, label=f"priority {p}")
                for p, c in PRIORITY_COLOURS.items()]
    handles += [
        Line2D([], [], linestyle="", marker="o", color="grey", markeredgecolor="black", label="served"),
        Line2D([], [], linestyle="", marker="X", color="grey", label="missed"),
        Line2D([], [], linestyle="", marker="o", markerfacecolor="none", color="grey", label="open at the end"),
        Line2D([], [], linestyle="", marker=VEHICLE_MARKER, color="grey", markeredgecolor="black", label="vehicle (last position)"),
        Line2D([], [], linestyle="", marker="s", color="black", label="base"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def _title(title: str, trace: EpisodeTrace) -> str:
    served = sum(v.outcome == "served" for v in trace.points)
    missed = sum(v.outcome == "missed" for v in trace.points)
    parts = [f"{served} points served, {missed} missed"]
    if "on_time_rate" in trace.metrics:
        parts.append(f"on-time rate {trace.metrics['on_time_rate']:.2f}")
    parts.append(f"reward {trace.metrics.get('reward', float('nan')):.1f}")
    return (f"{title}\n" if title else "") + ", ".join(parts)
