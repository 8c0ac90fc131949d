"""A training's wall time carried across resumes, per machine: what the done markers (the Lightning runs,
cad.experiment.stages) and the cache entries of the one-off loops (cad.training.loop_checkpoint) report.

A resumed training's time is its earlier segments' (restored from its checkpoint) plus this one's, so a run killed and
resumed is not filed under its last session alone. The seconds are kept per machine, so a training resumed on another
machine names both. A checkpoint written before its time was recorded leaves the earlier time unknown (``total`` is
None: the caller counts from the resumed step); one that kept its seconds but not its machine files them under
"not recorded".
"""
from __future__ import annotations

import time

from cad import hardware

NOT_RECORDED = "not recorded"


class WallClock:
    """Started at construction: the segment is the time since. ``restore`` the state an earlier segment saved."""

    def __init__(self):
        self.before: float | None = 0.0
        self.before_machines: dict[str, float] = {}
        self.start = time.time()

    def segment(self) -> float:
        return time.time() - self.start

    def total(self, segment: float | None = None) -> float | None:
        """Seconds of every segment kept; None when an earlier segment's were not recorded."""
        if self.before is None:
            return None
        return self.before + (self.segment() if segment is None else segment)

    def machines(self, segment: float | None = None) -> dict[str, float]:
        """Seconds per machine, in the order the machines trained: the earlier segments', then this one's."""
        machines, here = dict(self.before_machines), hardware.machine_name()
        machines[here] = machines.get(here, 0.0) + (self.segment() if segment is None else segment)
        return machines

    def state(self) -> dict:
        """What a checkpoint keeps, so that the training resumed from it goes on counting."""
        if self.before is None:
            return {"wall_s": None}
        segment = self.segment()
        return {"wall_s": self.total(segment), "machines": self.machines(segment)}

    def restore(self, state: dict | None) -> None:
        """Go on from a checkpoint's ``state()``; ``None`` or ``{}``: one written before time was recorded."""
        state = state or {}
        self.before = state.get("wall_s")
        unnamed = {NOT_RECORDED: self.before} if self.before else {}
        self.before_machines = dict(state.get("machines") or unnamed)


def machine_fields(machines: dict[str, float]) -> dict:
    """A done marker's machine fields for a training spread over several machines (none for one: the marker names
    its machine already)."""
    if len(machines) < 2:
        return {}
    return {"machine": " + ".join(machines), "machines": {name: round(s, 1) for name, s in machines.items()}}
