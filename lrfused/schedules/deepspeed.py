"""DeepSpeed's schedules (``deepspeed.runtime.lr_schedules``), same class names, argument names and defaults,
minus the optimizer; ``from_deepspeed(scheduler or config)`` converts a constructed one or its config dict.

DeepSpeed's engine steps the scheduler after every optimizer step, so step k of a lrfused optimizer applies
DeepSpeed's ``get_lr()`` at ``last_batch_iteration = k - 1``; step 0 applies what the constructor set.
Values are absolute lrs, given per param group as a list or once for all (DeepSpeed's ``_format_param``).
"""
from __future__ import annotations

import math
import warnings

from .. import contract
from .base import Schedule, _check_real, _is_int, _per_group, _real_or_list

_WARMUPS = contract.ENUMS["ds_warmup"]
WARMUP_LOG_RATE, WARMUP_LINEAR_RATE = "log", "linear"


def _warmup_steps(v) -> int:
    if not _is_int(v) or v <= 0:
        raise ValueError(f"warmup_num_steps must be a positive integer, got {v}")
    return max(2, int(v))  # as DeepSpeed: log(warmup_num_steps) must not be 0


def _warmup_type(v) -> str:
    if v not in (WARMUP_LOG_RATE, WARMUP_LINEAR_RATE):
        warnings.warn(f"Using unknown warmup_type: {v}. The increasing function is set to default (log)",
                      stacklevel=3)
        return WARMUP_LOG_RATE
    return v


class _DeepSpeedSchedule(Schedule):
    @property
    def _multiplicative(self):
        return False

    def _group_count_hint(self):
        lens = [len(getattr(self, f)) for f in self._fields if isinstance(getattr(self, f), tuple)]
        return lens[0] if lens else None

    def __repr__(self):
        return "deepspeed." + super().__repr__()


class WarmupLR(_DeepSpeedSchedule):
    """min_lr + (max_lr - min_lr) * gamma: gamma rises over warmup_num_steps (log or linear), then 1."""

    _fields = ("warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type")
    _variant = "WARMUP_LR"

    def __init__(self, warmup_min_lr=0.0, warmup_max_lr=None, warmup_num_steps: int = 1000,
                 warmup_type: str = WARMUP_LOG_RATE):
        self._set(warmup_num_steps=_warmup_steps(warmup_num_steps), warmup_type=_warmup_type(warmup_type),
                  warmup_min_lr=_real_or_list("warmup_min_lr", warmup_min_lr),
                  warmup_max_lr=None if warmup_max_lr is None else _real_or_list("warmup_max_lr", warmup_max_lr))

    def _total(self):
        return 0.0

    def _pack_node(self, g, n):
        max_lr = self.warmup_max_lr
        return contract.node("DS_WARMUP", dict(
            variant=_WARMUPS[self._variant], min_lr=_per_group("warmup_min_lr", self.warmup_min_lr, g, n),
            max_lr=0.0 if max_lr is None else _per_group("warmup_max_lr", max_lr, g, n),
            max_is_base=1.0 if max_lr is None else 0.0, warmup_num_steps=self.warmup_num_steps,
            log_warmup=1.0 if self.warmup_type == WARMUP_LOG_RATE else 0.0, total_num_steps=self._total(),
            warmup_min_ratio=0.0, cos_min_ratio=0.0))


class WarmupDecayLR(WarmupLR):
    """WarmupLR, then a linear decay to 0 at total_num_steps."""

    _fields = ("total_num_steps", "warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "warmup_type")
    _variant = "WARMUP_DECAY_LR"

    def __init__(self, total_num_steps: int, warmup_min_lr=0.0, warmup_max_lr=0.001, warmup_num_steps: int = 1000,
                 warmup_type: str = WARMUP_LOG_RATE):
        super().__init__(warmup_min_lr, warmup_max_lr, warmup_num_steps, warmup_type)
        self._set(total_num_steps=_check_real("total_num_steps", total_num_steps))
        if self.total_num_steps < self.warmup_num_steps:
            warnings.warn(f"total_num_steps {total_num_steps} is less than warmup_num_steps {warmup_num_steps}",
                          stacklevel=2)

    def _total(self):
        return self.total_num_steps


class WarmupCosineLR(_DeepSpeedSchedule):
    """The group's lr times a ratio: warmup from warmup_min_ratio to 1, then a cosine to cos_min_ratio."""

    _fields = ("total_num_steps", "warmup_min_ratio", "warmup_num_steps", "cos_min_ratio", "warmup_type")

    def __init__(self, total_num_steps: int, warmup_min_ratio: float = 0.0, warmup_num_steps: int = 1000,
                 cos_min_ratio: float = 0.0001, warmup_type: str = WARMUP_LOG_RATE):
        self._set(total_num_steps=_check_real("total_num_steps", total_num_steps),
                  warmup_min_ratio=_check_real("warmup_min_ratio", warmup_min_ratio),
                  warmup_num_steps=_warmup_steps(warmup_num_steps),
                  cos_min_ratio=_check_real("cos_min_ratio", cos_min_ratio), warmup_type=_warmup_type(warmup_type))
        if self.total_num_steps < self.warmup_num_steps:
            warnings.warn(f"total_num_steps {total_num_steps} is less than warmup_num_steps {warmup_num_steps}",
                          stacklevel=2)

    def _pack_node(self, g, n):
        return contract.node("DS_WARMUP", dict(
            variant=_WARMUPS["WARMUP_COSINE_LR"], min_lr=0.0, max_lr=0.0, max_is_base=1.0,
            warmup_num_steps=self.warmup_num_steps, log_warmup=1.0 if self.warmup_type == WARMUP_LOG_RATE else 0.0,
            total_num_steps=self.total_num_steps, warmup_min_ratio=self.warmup_min_ratio,
            cos_min_ratio=self.cos_min_ratio))


class LRRangeTest(_DeepSpeedSchedule):
    """min_lr * (1 + step_rate * interval), interval = k / step_size (floored with staircase)."""

    _fields = ("lr_range_test_min_lr", "lr_range_test_step_size", "lr_range_test_step_rate",
               "lr_range_test_staircase")

    def __init__(self, lr_range_test_min_lr=1e-3, lr_range_test_step_size: int = 2000,
                 lr_range_test_step_rate: float = 1.0, lr_range_test_staircase: bool = False):
        if not _is_int(lr_range_test_step_size) or lr_range_test_step_size <= 0:
            raise ValueError(f"lr_range_test_step_size must be a positive integer, got {lr_range_test_step_size}")
        self._set(lr_range_test_min_lr=_real_or_list("lr_range_test_min_lr", lr_range_test_min_lr),
                  lr_range_test_step_size=int(lr_range_test_step_size),
                  lr_range_test_step_rate=_check_real("lr_range_test_step_rate", lr_range_test_step_rate),
                  lr_range_test_staircase=bool(lr_range_test_staircase))

    def _pack_node(self, g, n):
        return contract.node("DS_RANGE_TEST", dict(
            min_lr=_per_group("lr_range_test_min_lr", self.lr_range_test_min_lr, g, n),
            step_size=self.lr_range_test_step_size, step_rate=self.lr_range_test_step_rate,
            staircase=1.0 if self.lr_range_test_staircase else 0.0))


class OneCycle(_DeepSpeedSchedule):
    """DeepSpeed's 1cycle: up over cycle_first_step_size, down over cycle_second_step_size (optionally in
    stairs), then a 1/(1 + rate * t) decay; momentum (Adam's beta1) cycles the other way.

    DeepSpeed writes ``betas = (momentum, 0.99)``, so it also sets beta2 to 0.99; lrfused schedules beta1
    only: construct the Adam optimizer with ``betas=(b1, 0.99)`` to match. DeepSpeed disables the momentum
    cycle for optimizers without ``betas`` (SGD); ``from_deepspeed`` does the same, this class cycles SGD's
    momentum when ``cycle_momentum=True``."""

    _fields = ("cycle_min_lr", "cycle_max_lr", "decay_lr_rate", "cycle_first_step_size", "cycle_second_step_size",
               "cycle_first_stair_count", "cycle_second_stair_count", "decay_step_size", "cycle_momentum",
               "cycle_min_mom", "cycle_max_mom", "decay_mom_rate")

    def __init__(self, cycle_min_lr, cycle_max_lr, decay_lr_rate=0., cycle_first_step_size=2000,
                 cycle_second_step_size=None, cycle_first_stair_count=0, cycle_second_stair_count=None,
                 decay_step_size=0, cycle_momentum=True, cycle_min_mom=0.8, cycle_max_mom=0.9, decay_mom_rate=0.):
        first = _check_real("cycle_first_step_size", cycle_first_step_size)
        second = first if cycle_second_step_size is None else _check_real("cycle_second_step_size",
                                                                          cycle_second_step_size)
        if first <= 0:
            raise ValueError(f"cycle_first_step_size must be positive, got {first}")
        if second < 0:
            raise ValueError(f"cycle_second_step_size must be non-negative, got {second}")
        first_stairs = _check_real("cycle_first_stair_count", cycle_first_stair_count)
        second_stairs = first_stairs if cycle_second_stair_count is None else _check_real(
            "cycle_second_stair_count", cycle_second_stair_count)
        self._set(cycle_min_lr=_real_or_list("cycle_min_lr", cycle_min_lr),
                  cycle_max_lr=_real_or_list("cycle_max_lr", cycle_max_lr),
                  decay_lr_rate=_check_real("decay_lr_rate", decay_lr_rate), cycle_first_step_size=first,
                  cycle_second_step_size=second, cycle_first_stair_count=first_stairs,
                  cycle_second_stair_count=second_stairs,
                  decay_step_size=_check_real("decay_step_size", decay_step_size),
                  cycle_momentum=bool(cycle_momentum), cycle_min_mom=_real_or_list("cycle_min_mom", cycle_min_mom),
                  cycle_max_mom=_real_or_list("cycle_max_mom", cycle_max_mom),
                  decay_mom_rate=_check_real("decay_mom_rate", decay_mom_rate))

    @property
    def cycles_momentum(self):
        return self.cycle_momentum

    def _pack_node(self, g, n):
        no_decay = math.isclose(self.decay_step_size, 0)  # DeepSpeed's test, both decays
        return contract.node("DS_ONE_CYCLE", dict(
            min_lr=_per_group("cycle_min_lr", self.cycle_min_lr, g, n),
            max_lr=_per_group("cycle_max_lr", self.cycle_max_lr, g, n),
            first_step_size=self.cycle_first_step_size, second_step_size=self.cycle_second_step_size,
            first_stair_count=self.cycle_first_stair_count, second_stair_count=self.cycle_second_stair_count,
            decay_step_size=self.decay_step_size, decay_lr_rate=self.decay_lr_rate,
            skip_lr_decay=1.0 if no_decay or math.isclose(self.decay_lr_rate, 0) else 0.0,
            cycle_momentum=1.0 if self.cycle_momentum else 0.0,
            min_mom=_per_group("cycle_min_mom", self.cycle_min_mom, g, n),
            max_mom=_per_group("cycle_max_mom", self.cycle_max_mom, g, n), decay_mom_rate=self.decay_mom_rate,
            skip_mom_decay=1.0 if no_decay or math.isclose(self.decay_mom_rate, 0) else 0.0))


DEEPSPEED_SCHEDULES = {c.__name__: c for c in (WarmupLR, WarmupDecayLR, WarmupCosineLR, LRRangeTest, OneCycle)}


def _as_list(v):
    return list(v) if isinstance(v, (list, tuple)) else v


def from_deepspeed(scheduler) -> Schedule:
    """The lrfused schedule equivalent to a constructed ``deepspeed.runtime.lr_schedules`` object, or to the
    ``scheduler`` section of a DeepSpeed config (``{"type": "WarmupLR", "params": {...}}``). Reads the
    configuration, not the position (``last_batch_iteration``): the schedule starts at step 0.

    From a scheduler object, OneCycle's momentum cycle is on only where DeepSpeed kept it on (optimizers with
    ``betas``); a config dict does not say which optimizer it is for, so there it follows the config's
    ``cycle_momentum`` (default True: SGD's momentum cycles too; pass False to match DeepSpeed on SGD).
    """
    if isinstance(scheduler, dict):
        kind, params = scheduler.get("type"), dict(scheduler.get("params", {}))
        if kind not in DEEPSPEED_SCHEDULES:
            raise ValueError(f"from_deepspeed: unknown scheduler type {kind!r}; expected one of "
                             f"{', '.join(DEEPSPEED_SCHEDULES)}")
        params.pop("last_batch_iteration", None)
        return DEEPSPEED_SCHEDULES[kind](**params)
    name = type(scheduler).__name__
    if name not in DEEPSPEED_SCHEDULES or not type(scheduler).__module__.startswith("deepspeed."):
        raise TypeError(f"from_deepspeed expects one of DeepSpeed's {', '.join(DEEPSPEED_SCHEDULES)} (or its config "
                        f"dict), got {name}")
    s = scheduler
    if name in ("WarmupLR", "WarmupDecayLR"):
        warm = dict(warmup_min_lr=list(s.min_lrs), warmup_max_lr=list(s.max_lrs),
                    warmup_num_steps=s.warmup_num_steps, warmup_type=s.warmup_type)
        return WarmupLR(**warm) if name == "WarmupLR" else WarmupDecayLR(s.total_num_steps, **warm)
    if name == "WarmupCosineLR":
        return WarmupCosineLR(s.total_num_steps, s.warmup_min_ratio, s.warmup_num_steps, s.cos_min_ratio,
                              s.warmup_type)
    if name == "LRRangeTest":
        return LRRangeTest(list(s.min_lr), s.step_size, s.step_rate, s.staircase)
    moms = {}
    if s.cycle_momentum:  # DeepSpeed turned it off for optimizers without betas
        moms = dict(cycle_min_mom=[m[0] for m in s.min_moms], cycle_max_mom=[m[0] for m in s.max_moms],
                    decay_mom_rate=getattr(s, "decay_mom_rate", 0.0))
    return OneCycle(list(s.min_lrs), list(s.max_lrs), s.decay_lr_rate, s.first_step_size, s.second_step_size,
                    s.first_stair_count, s.second_stair_count, s.decay_step_size, cycle_momentum=s.cycle_momentum,
                    **moms)
