"""Composition: SequentialLR, ChainedScheduler, Schedule.per_epoch, and the wrappers Clamp and Restart."""
from __future__ import annotations

import math
from typing import Iterable

from .. import contract
from .base import Schedule, _check_pos_int, _check_real, _is_int

# ----------------------------------------------------------------------------------------------------
# composites


def _check_children(owner: str, schedules) -> tuple:
    if isinstance(schedules, Schedule) or not isinstance(schedules, (list, tuple)):
        raise TypeError(f"{owner} expects a list of schedules, got {type(schedules).__name__}")
    if len(schedules) < 1:
        raise ValueError(f"{owner} expects at least one schedule, but got none.")
    for i, s in enumerate(schedules):
        if not isinstance(s, Schedule):
            raise TypeError(f"{owner}: schedule at index {i} is a {type(s).__name__}, not a lrfused Schedule")
        if s.is_plateau or _contains_plateau(s):
            raise ValueError(
                f"{owner} does not support ReduceLROnPlateau (it is driven by reported metrics, not by the "
                f"step), but got one at index {i}; use it as the optimizer's schedule on its own.")
    return tuple(schedules)


def _contains_plateau(s: Schedule) -> bool:
    return any(_contains_plateau(c) or c.is_plateau for c in getattr(s, "schedules", ()))


def _check_stack(owner: str, need: int):
    if need > contract.MAX_STACK:
        raise ValueError(f"{owner}: schedule nesting too deep ({need} > {contract.MAX_STACK} evaluation frames)")


class SequentialLR(Schedule):
    """Child i (i = number of milestones <= k) evaluated at k - milestone_i: each child restarts at its
    milestone."""

    _fields = ("schedules", "milestones")

    def __init__(self, schedules, milestones):
        schedules = _check_children("SequentialLR", schedules)
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise TypeError(f"milestones must be a list of integers, got {milestones!r}")
        milestones = list(milestones)
        if len(milestones) != len(schedules) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more than the number "
                f"of milestone points, but got number of schedulers {len(schedules)} and the number of "
                f"milestones to be equal to {len(milestones)}")
        prev = 0
        for m in milestones:
            if not _is_int(m) or m <= prev:
                raise ValueError(f"milestones must be strictly increasing positive integers, got {milestones}")
            prev = m
        self._set(schedules=schedules, milestones=tuple(int(m) for m in milestones))
        _check_stack("SequentialLR", self._stack_need())

    @property
    def cycles_momentum(self):
        return any(s.cycles_momentum for s in self.schedules)

    @property
    def _multiplicative(self):
        return all(s._multiplicative for s in self.schedules)

    def _stack_need(self):
        return max(s._stack_need() for s in self.schedules)

    def _group_count_hint(self):
        hints = [h for h in (s._group_count_hint() for s in self.schedules) if h is not None]
        return hints[0] if hints else None

    def max_step(self):
        starts = (0,) + self.milestones
        ends = self.milestones + (None,)
        bound = None
        for s, a, e in zip(self.schedules, starts, ends):
            m = s.max_step()
            if m is not None and (e is None or a + m < e - 1):
                bound = a + m if bound is None else min(bound, a + m)
        return bound

    def _pack_node(self, g, n):
        return contract.node("SEQUENTIAL", {"count": len(self.schedules)}, tail=self.milestones,
                             children=[s._pack_node(g, n) for s in self.schedules])


class ChainedScheduler(Schedule):
    """b * prod_i m_i(k) for multiplicative children b * m_i(k)."""

    _fields = ("schedules",)

    def __init__(self, schedules):
        schedules = _check_children("ChainedScheduler", schedules)
        for i, s in enumerate(schedules):
            if not s._multiplicative:
                raise ValueError(
                    f"ChainedScheduler: schedule at index {i} ({type(s).__name__}) is not multiplicative "
                    "(lr = base_lr * factor(k)); CosineAnnealing* with eta_min != 0, CyclicLR and OneCycleLR "
                    "cannot be chained")
        self._set(schedules=schedules)
        _check_stack("ChainedScheduler", self._stack_need())

    @property
    def cycles_momentum(self):
        return any(s.cycles_momentum for s in self.schedules)

    def _stack_need(self):
        n = len(self.schedules)
        return max((n - 1 - i) + s._stack_need() for i, s in enumerate(self.schedules))

    def _group_count_hint(self):
        hints = [h for h in (s._group_count_hint() for s in self.schedules) if h is not None]
        return hints[0] if hints else None

    def max_step(self):
        bounds = [m for m in (s.max_step() for s in self.schedules) if m is not None]
        return min(bounds) if bounds else None

    def _pack_node(self, g, n):
        return contract.node("CHAINED", {"count": len(self.schedules)},
                             children=[s._pack_node(g, n) for s in self.schedules])


# ----------------------------------------------------------------------------------------------------
# wrappers of one schedule: per_epoch, Clamp, Restart


def _check_wrapped(owner: str, schedule) -> Schedule:
    if not isinstance(schedule, Schedule):
        raise TypeError(f"{owner} expects a lrfused Schedule, got {type(schedule).__name__}")
    if schedule.is_plateau or _contains_plateau(schedule):
        raise ValueError(f"{owner} does not support ReduceLROnPlateau: it is driven by reported metrics "
                         "(opt.report), not by the step")
    return schedule


class _Wrapper(Schedule):
    """One child schedule, changed by the wrapper (by default as multiplicative as it, and no deeper)."""

    @property
    def schedules(self):
        return (self.schedule,)

    @property
    def _multiplicative(self):
        return self.schedule._multiplicative

    def _stack_need(self):
        return self.schedule._stack_need()

    @property
    def cycles_momentum(self):
        return self.schedule.cycles_momentum

    def _group_count_hint(self):
        return self.schedule._group_count_hint()


class PerEpoch(_Wrapper):
    """``schedule`` evaluated at floor(step / steps_per_epoch) (``Schedule.per_epoch``)."""

    _fields = ("schedule", "steps_per_epoch")

    def __init__(self, schedule: Schedule, steps_per_epoch: int):
        schedule = _check_wrapped("per_epoch", schedule)
        self._set(schedule=schedule, steps_per_epoch=_check_pos_int("steps_per_epoch", steps_per_epoch))
        _check_stack("per_epoch", self._stack_need())

    def max_step(self):
        m = self.schedule.max_step()
        return None if m is None else (m + 1) * self.steps_per_epoch - 1

    def _pack_node(self, g, n):
        return contract.node("PER_EPOCH", {"steps_per_epoch": self.steps_per_epoch},
                             children=[self.schedule._pack_node(g, n)])


class Clamp(_Wrapper):
    """``schedule``'s lr kept inside [min_lr, max_lr] (``None``: no bound on that side) at every step:
    max(min_lr, min(max_lr, lr)). Momentum is not clamped."""

    _fields = ("schedule", "min_lr", "max_lr")

    def __init__(self, schedule: Schedule, min_lr=None, max_lr=None):
        schedule = _check_wrapped("Clamp", schedule)
        lo = None if min_lr is None else _check_real("min_lr", min_lr)
        hi = None if max_lr is None else _check_real("max_lr", max_lr)
        if lo is None and hi is None:
            raise ValueError("Clamp needs min_lr, max_lr or both")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"Clamp: min_lr ({lo}) must not exceed max_lr ({hi})")
        self._set(schedule=schedule, min_lr=lo, max_lr=hi)
        _check_stack("Clamp", self._stack_need())

    @property
    def _multiplicative(self):
        return False  # absolute bounds

    def _stack_need(self):
        return 1 + self.schedule._stack_need()

    def max_step(self):
        return self.schedule.max_step()

    def _pack_node(self, g, n):
        lo = -math.inf if self.min_lr is None else self.min_lr
        hi = math.inf if self.max_lr is None else self.max_lr
        return contract.node("CLAMP", {"min_lr": lo, "max_lr": hi}, children=[self.schedule._pack_node(g, n)])


class Restart(_Wrapper):
    """``schedule`` restarted every ``period`` steps: evaluated at k mod period (lr and momentum)."""

    _fields = ("schedule", "period")

    def __init__(self, schedule: Schedule, period: int):
        schedule = _check_wrapped("Restart", schedule)
        self._set(schedule=schedule, period=_check_pos_int("period", period))
        _check_stack("Restart", self._stack_need())

    def max_step(self):
        m = self.schedule.max_step()
        return m if m is not None and m < self.period - 1 else None

    def _pack_node(self, g, n):
        return contract.node("RESTART", {"period": self.period}, children=[self.schedule._pack_node(g, n)])
