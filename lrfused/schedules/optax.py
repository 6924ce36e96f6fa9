"""optax's schedules (``optax.schedules``), same function names, argument names and defaults.

An optax schedule maps the update count to a value: step k of a lrfused optimizer applies ``schedule(k)``.
The values are absolute lrs, the same for every param group (the groups' own lrs are not read), as an
optax schedule passed as ``learning_rate`` is.
"""
from __future__ import annotations

import logging

from .. import contract
from .base import Schedule, _check_int, _check_real, _is_int
from .composites import SequentialLR, _check_children, _check_stack

_ANNEAL = contract.ENUMS["anneal"]


class OptaxSchedule(Schedule):
    """One of optax's schedules (build it with the functions of this module)."""

    _fields = ("name", "kwargs")
    _hidden = ("node",)

    def __init__(self, name: str, kwargs: tuple, node: tuple):
        self._set(name=name, kwargs=kwargs, node=node)

    def __repr__(self):
        return f"optax.{self.name}({', '.join(f'{k}={v!r}' for k, v in self.kwargs)})"

    @property
    def _multiplicative(self):
        return False

    def _pack_node(self, g, n):
        return list(self.node)


class JoinSchedules(SequentialLR):
    """optax.join_schedules: schedule i (the last whose boundary <= k) at k - boundary. SequentialLR's
    evaluation, with optax's freedom: boundaries need not be positive or increasing."""

    _fields = ("schedules", "boundaries")

    def __init__(self, schedules, boundaries):
        schedules = _check_children("join_schedules", schedules)
        boundaries = tuple(boundaries)
        if len(boundaries) != len(schedules) - 1 or not all(_is_int(b) for b in boundaries):
            raise ValueError(f"join_schedules expects {len(schedules) - 1} integer boundaries, got {boundaries!r}")
        self._set(schedules=schedules, boundaries=tuple(int(b) for b in boundaries))
        _check_stack("join_schedules", self._stack_need())

    @property
    def milestones(self):  # what SequentialLR packs and bounds
        return self.boundaries

    def __repr__(self):
        return f"optax.join_schedules({list(self.schedules)!r}, {list(self.boundaries)!r})"


def _make(name, kind, fields, tail=(), **shown):
    shown = tuple((k, tuple(sorted(v.items())) if isinstance(v, dict) else v) for k, v in shown.items())
    return OptaxSchedule(name, shown, tuple(contract.node(kind, fields, tail=tail)))


def constant_schedule(value) -> Schedule:
    value = _check_real("value", value)
    return _make("constant_schedule", "OPTAX_POLYNOMIAL", dict(init_value=value, end_value=value, power=1.0,
                                                                transition_steps=0, transition_begin=0), value=value)


def polynomial_schedule(init_value, end_value, power, transition_steps: int, transition_begin: int = 0) -> Schedule:
    init_value, end_value = _check_real("init_value", init_value), _check_real("end_value", end_value)
    power = _check_real("power", power)
    steps, begin = _check_int("transition_steps", transition_steps), _check_int("transition_begin", transition_begin)
    if steps <= 0:
        logging.info("A polynomial schedule was set with a non-positive `transition_steps` value; this results in "
                     "a constant schedule with value `init_value`.")
    return _make("polynomial_schedule", "OPTAX_POLYNOMIAL",
                 dict(init_value=init_value, end_value=end_value, power=power, transition_steps=max(steps, 0),
                      transition_begin=max(begin, 0)),
                 init_value=init_value, end_value=end_value, power=power, transition_steps=steps,
                 transition_begin=begin)


def linear_schedule(init_value, end_value, transition_steps: int, transition_begin: int = 0) -> Schedule:
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def _boundaries_and_scales(name, boundaries_and_scales):
    if boundaries_and_scales is None:
        return ()
    if not isinstance(boundaries_and_scales, dict):
        raise TypeError(f"boundaries_and_scales must be a dict {{boundary: scale}}, got {boundaries_and_scales!r}")
    pairs = sorted((_check_int("boundary", b), _check_real(f"boundaries_and_scales[{b}]", s))
                   for b, s in boundaries_and_scales.items())
    if not all(s >= 0.0 for _, s in pairs):
        raise ValueError(f"`{name}` expects non-negative scale factors")
    return tuple(pairs)


def piecewise_constant_schedule(init_value, boundaries_and_scales=None) -> Schedule:
    init_value = _check_real("init_value", init_value)
    pairs = _boundaries_and_scales("piecewise_constant_schedule", boundaries_and_scales)
    return _make("piecewise_constant_schedule", "OPTAX_PIECEWISE_CONSTANT",
                 dict(init_value=init_value, count=len(pairs)), tail=[v for p in pairs for v in p],
                 init_value=init_value, boundaries_and_scales=boundaries_and_scales)


def exponential_decay(init_value, transition_steps: int, decay_rate, transition_begin: int = 0,
                      staircase: bool = False, end_value=None) -> Schedule:
    init_value, decay_rate = _check_real("init_value", init_value), _check_real("decay_rate", decay_rate)
    steps, begin = _check_int("transition_steps", transition_steps), _check_int("transition_begin", transition_begin)
    end = None if end_value is None else _check_real("end_value", end_value)
    return _make("exponential_decay", "OPTAX_EXPONENTIAL",
                 dict(init_value=init_value, transition_steps=max(steps, 0), decay_rate=decay_rate,
                      transition_begin=max(begin, 0), staircase=1.0 if staircase else 0.0,
                      has_end=0.0 if end is None else 1.0, end_value=0.0 if end is None else end),
                 init_value=init_value, transition_steps=steps, decay_rate=decay_rate, transition_begin=begin,
                 staircase=bool(staircase), end_value=end_value)


def cosine_decay_schedule(init_value, decay_steps: int, alpha=0.0, exponent=1.0) -> Schedule:
    init_value = _check_real("init_value", init_value)
    if not _is_int(decay_steps) or not decay_steps > 0:
        raise ValueError(f"The cosine_decay_schedule requires positive decay_steps, got decay_steps={decay_steps!r}.")
    alpha, exponent = _check_real("alpha", alpha), _check_real("exponent", exponent)
    return _make("cosine_decay_schedule", "OPTAX_COSINE",
                 dict(init_value=init_value, decay_steps=decay_steps, alpha=alpha, exponent=exponent),
                 init_value=init_value, decay_steps=decay_steps, alpha=alpha, exponent=exponent)


def piecewise_interpolate_schedule(interpolate_type: str, init_value, boundaries_and_scales=None) -> Schedule:
    if interpolate_type not in ("linear", "cosine"):
        raise ValueError("`interpolate_type` must be either 'cosine' or 'linear'")
    init_value = _check_real("init_value", init_value)
    pairs = _boundaries_and_scales("piecewise_interpolate_schedule", boundaries_and_scales)
    values, v = [], init_value
    for _, scale in pairs:
        v = v * scale  # jnp.cumprod, in order
        values.append(v)
    interp = _ANNEAL["COS"] if interpolate_type == "cosine" else _ANNEAL["LINEAR"]
    return _make("piecewise_interpolate_schedule", "OPTAX_PIECEWISE_INTERPOLATE",
                 dict(init_value=init_value, interpolate=interp, count=len(pairs)),
                 tail=[b for b, _ in pairs] + values, interpolate_type=interpolate_type, init_value=init_value,
                 boundaries_and_scales=boundaries_and_scales)


def linear_onecycle_schedule(transition_steps: int, peak_value, pct_start: float = 0.3, pct_final: float = 0.85,
                             div_factor: float = 25.0, final_div_factor: float = 1e4) -> Schedule:
    if not _is_int(transition_steps) or transition_steps <= 0:
        raise ValueError("A linear onecycle schedule was set with a non-positive `transition_steps`")
    return piecewise_interpolate_schedule("linear", peak_value / div_factor, {
        int(pct_start * transition_steps): div_factor,
        int(pct_final * transition_steps): 1.0 / div_factor,
        transition_steps: 1.0 / final_div_factor})


def cosine_onecycle_schedule(transition_steps: int, peak_value, pct_start: float = 0.3, div_factor: float = 25.0,
                             final_div_factor: float = 1e4) -> Schedule:
    if not _is_int(transition_steps) or transition_steps <= 0:
        raise ValueError("A linear onecycle schedule was set with a non-positive `transition_steps`")
    return piecewise_interpolate_schedule("cosine", peak_value / div_factor, {
        int(pct_start * transition_steps): div_factor,
        int(transition_steps): 1.0 / (div_factor * final_div_factor)})


def warmup_constant_schedule(init_value, peak_value, warmup_steps: int) -> Schedule:
    return linear_schedule(init_value, peak_value, warmup_steps)


def join_schedules(schedules, boundaries) -> Schedule:
    return JoinSchedules(schedules, boundaries)


def warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps: int, decay_steps: int, end_value=0.0,
                                 exponent=1.0) -> Schedule:
    peak_value = _check_real("peak_value", peak_value)
    alpha = 0.0 if peak_value == 0.0 else _check_real("end_value", end_value) / peak_value
    return join_schedules([linear_schedule(init_value, peak_value, warmup_steps),
                           cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)],
                          [warmup_steps])


def warmup_exponential_decay_schedule(init_value, peak_value, warmup_steps: int, transition_steps: int, decay_rate,
                                      transition_begin: int = 0, staircase: bool = False, end_value=None) -> Schedule:
    return join_schedules([linear_schedule(init_value, peak_value, warmup_steps),
                           exponential_decay(peak_value, transition_steps, decay_rate, transition_begin, staircase,
                                             end_value)], [warmup_steps])


def sgdr_schedule(cosine_kwargs) -> Schedule:
    boundaries, schedules, step = [], [], 0
    for kwargs in cosine_kwargs:
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        boundaries.append(step + kwargs["decay_steps"])
        step += kwargs["decay_steps"]
    return join_schedules(schedules, boundaries[:-1])


__all__ = ["constant_schedule", "polynomial_schedule", "linear_schedule", "piecewise_constant_schedule",
           "exponential_decay", "cosine_decay_schedule", "piecewise_interpolate_schedule", "linear_onecycle_schedule",
           "cosine_onecycle_schedule", "warmup_constant_schedule", "warmup_cosine_decay_schedule",
           "warmup_exponential_decay_schedule", "sgdr_schedule", "join_schedules", "OptaxSchedule", "JoinSchedules"]
