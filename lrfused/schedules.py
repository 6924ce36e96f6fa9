"""Learning-rate schedules: small immutable objects packed into the flat program the kernels evaluate.

Every formula lives once, in ``csrc/schedule.h``; this module validates arguments (as torch does, naming
the argument), packs a schedule into a float64 "program" per param group, and evaluates it on the host
through the same C++ (``torch.ops.lrfused.schedule_lrs`` / ``schedule_momenta``).

Program format (see ``csrc/schedule.h`` for each kind's parameter slots)::

    node := [kind, node_length_in_doubles, params..., children...]

Step indexing: ``lr_at(k, base_lr)`` is the lr that the k-th ``opt.step()`` (k = 0, 1, ...) applies, which
is the lr torch applies in the loop ``opt.step(); sched.step()``.
"""
from __future__ import annotations

import functools
import math
import numbers
import warnings
from typing import Callable, Iterable, Sequence

import torch

from . import _ops  # noqa: F401  (registers the ops)

__all__ = [
    "Schedule", "Constant", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR",
    "LinearLR", "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts",
    "CyclicLR", "OneCycleLR", "ReduceLROnPlateau", "SequentialLR", "ChainedScheduler", "PerEpoch",
    "HFSchedule", "get_schedule", "from_torch", "plot", "HF_NAMES", "DEFAULT_TABULATE_STEPS",
]

# Node kinds: keep in sync with enum Kind in csrc/schedule.h.
_K_CONSTANT = 0
_K_TABLE = 1
_K_STEP = 2
_K_MULTI_STEP = 3
_K_CONSTANT_FACTOR = 4
_K_LINEAR = 5
_K_EXPONENTIAL = 6
_K_POLYNOMIAL = 7
_K_COSINE = 8
_K_COSINE_WARM_RESTARTS = 9
_K_CYCLIC = 10
_K_ONE_CYCLE = 11
_K_PLATEAU = 12
_K_SEQUENTIAL = 13
_K_CHAINED = 14
_K_PER_EPOCH = 15
_K_HF_CONSTANT_WITH_WARMUP = 20
_K_HF_LINEAR = 21
_K_HF_COSINE = 22
_K_HF_COSINE_RESTARTS = 23
_K_HF_POLYNOMIAL = 24
_K_HF_INVERSE_SQRT = 25
_K_HF_COSINE_WARMUP_MIN_LR = 26
_K_HF_WSD = 27

_MAX_STACK = 32  # sched::kMaxStack

#: How many steps a Python callable (a LambdaLR / MultiplicativeLR lambda, a CyclicLR scale_fn) is
#: tabulated for when the caller does not say (``from_torch(..., total_steps=...)``). Past the table the
#: last value holds.
DEFAULT_TABULATE_STEPS = 10_000


def _node(kind: int, params: Sequence[float] = (), children: Sequence[list] = ()) -> list:
    body = [float(p) for p in params]
    for c in children:
        body.extend(c)
    return [float(kind), float(2 + len(body))] + body


# ----------------------------------------------------------------------------------------------------
# argument checks


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_pos_int(name: str, v) -> int:
    if not _is_int(v) or v <= 0:
        raise ValueError(f"Expected positive integer {name}, but got {v!r}")
    return int(v)


def _check_nonneg_int(name: str, v) -> int:
    if not _is_int(v) or v < 0:
        raise ValueError(f"Expected non-negative integer {name}, but got {v!r}")
    return int(v)


def _check_real(name: str, v) -> float:
    if not _is_real(v):
        raise TypeError(f"Expected a real number for {name}, but got {v!r} of type {type(v).__name__}")
    if not math.isfinite(float(v)):
        raise ValueError(f"Expected a finite {name}, but got {v!r}")
    return float(v)


def _real_or_list(name: str, v):
    """A float, or a tuple of floats (one per param group, resolved at packing time)."""
    if isinstance(v, (list, tuple)):
        if len(v) == 0:
            raise ValueError(f"{name} must not be an empty list")
        return tuple(_check_real(f"{name}[{i}]", x) for i, x in enumerate(v))
    return _check_real(name, v)


def _per_group(name: str, v, group: int, num_groups: int) -> float:
    """torch's _format_param: a list must have one value per param group."""
    if isinstance(v, tuple):
        if len(v) != num_groups:
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(v)} values, param_groups has {num_groups}.")
        return v[group]
    return v


def _tabulate(name: str, fn: Callable, args: Iterable[int]) -> tuple:
    out = []
    for a in args:
        v = fn(a)
        if isinstance(v, torch.Tensor):
            v = v.item()
        if not _is_real(v) or not math.isfinite(float(v)):
            raise ValueError(f"{name}({a}) returned {v!r}; expected a finite real number")
        out.append(float(v))
    return tuple(out)


# ----------------------------------------------------------------------------------------------------
# base class


class Schedule:
    """An immutable learning-rate schedule. Subclasses set ``_fields`` and implement ``_pack_node``."""

    _fields: tuple = ()
    _hidden: tuple = ()  # fields compared and pickled but not shown in repr

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _set(self, **kw):
        for k, v in kw.items():
            object.__setattr__(self, k, v)

    # -- identity -----------------------------------------------------------------------------------
    def _key(self):
        return (type(self),) + tuple(getattr(self, f) for f in self._fields + self._hidden)

    def __eq__(self, other):
        return isinstance(other, Schedule) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({args})"

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_cache"}

    def __setstate__(self, state):
        for k, v in state.items():
            object.__setattr__(self, k, v)

    # -- structure ----------------------------------------------------------------------------------
    @property
    def cycles_momentum(self) -> bool:
        """True when the schedule sets momentum / beta1 (CyclicLR, OneCycleLR with cycle_momentum)."""
        return False

    @property
    def is_plateau(self) -> bool:
        return False

    @property
    def _multiplicative(self) -> bool:
        """lr(k, b) == b * m(k): may be a ChainedScheduler child."""
        return True

    def _stack_need(self) -> int:
        return 1

    def _group_count_hint(self):
        """Number of param groups implied by per-group list arguments (None when there are none)."""
        return None

    def max_step(self):
        """Largest step index k that may be applied eagerly (None: unbounded)."""
        return None

    def plateau_config(self, num_groups: int) -> list:
        raise ValueError(f"{type(self).__name__} is not a ReduceLROnPlateau schedule")

    def _pack_node(self, group: int, num_groups: int) -> list:
        raise NotImplementedError

    def _pack(self, group_index: int = 0, num_groups: int = 1) -> torch.Tensor:
        """The float64 CPU program of this schedule for param group ``group_index`` of ``num_groups``
        (a fresh tensor the caller may move or keep)."""
        return self._program(group_index, num_groups).clone()

    def _program(self, group_index: int, num_groups: int) -> torch.Tensor:
        if not _is_int(num_groups) or num_groups < 1:
            raise ValueError(f"num_groups must be a positive integer, got {num_groups!r}")
        if not _is_int(group_index) or not 0 <= group_index < num_groups:
            raise ValueError(f"group_index must be in [0, {num_groups}), got {group_index!r}")
        cache = self.__dict__.get("_cache")
        if cache is None:
            cache = {}
            object.__setattr__(self, "_cache", cache)
        key = (int(group_index), int(num_groups))
        prog = cache.get(key)
        if prog is None:
            prog = torch.tensor(self._pack_node(*key), dtype=torch.float64)
            if not torch.compiler.is_compiling():  # traced programs are checked by the ops themselves
                _ops._C.check_program(prog)  # the C++ validator: what every kernel relies on
            cache[key] = prog
        return prog

    def _host_program(self, group: int) -> torch.Tensor:
        hint = self._group_count_hint()
        return self._program(group, hint if hint is not None else group + 1)

    # -- evaluation (through the C++) ---------------------------------------------------------------
    def _evaluate(self, op, steps: torch.Tensor, value: float, group: int) -> torch.Tensor:
        return op(self._host_program(group), steps, float(value))

    def lrs(self, num_steps: int, base_lr: float = 1.0, *, group: int = 0) -> torch.Tensor:
        """lr at steps 0 .. num_steps-1 (float64). ``group`` picks a per-group list entry."""
        steps = torch.arange(_check_nonneg_int("num_steps", num_steps), dtype=torch.int64)
        return self._evaluate(torch.ops.lrfused.schedule_lrs, steps, base_lr, group)

    def lr_at(self, step: int, base_lr: float = 1.0, *, group: int = 0) -> float:
        steps = torch.tensor([_check_nonneg_int("step", step)], dtype=torch.int64)
        return float(self._evaluate(torch.ops.lrfused.schedule_lrs, steps, base_lr, group)[0])

    def momenta(self, num_steps: int, fallback: float = 0.0, *, group: int = 0) -> torch.Tensor:
        """Scheduled momentum (SGD momentum / Adam beta1) at steps 0 .. num_steps-1, else ``fallback``."""
        steps = torch.arange(_check_nonneg_int("num_steps", num_steps), dtype=torch.int64)
        return self._evaluate(torch.ops.lrfused.schedule_momenta, steps, fallback, group)

    def momentum_at(self, step: int, fallback: float = 0.0, *, group: int = 0) -> float:
        steps = torch.tensor([_check_nonneg_int("step", step)], dtype=torch.int64)
        return float(self._evaluate(torch.ops.lrfused.schedule_momenta, steps, fallback, group)[0])

    def per_epoch(self, steps_per_epoch: int) -> "Schedule":
        """This schedule evaluated at floor(step / steps_per_epoch)."""
        return PerEpoch(self, steps_per_epoch)


class Constant(Schedule):
    """No schedule: the group's base lr at every step."""

    def __init__(self):
        pass

    def _pack_node(self, g, n):
        return _node(_K_CONSTANT)


# ----------------------------------------------------------------------------------------------------
# torch.optim.lr_scheduler policies


class _Tabulated(Schedule):
    _fields = ("total_steps",)
    _hidden = ("tables",)

    def _group_count_hint(self):
        return len(self.tables) if len(self.tables) > 1 else None

    def max_step(self):
        """The table's last step: an optimizer refuses to step past it rather than hold its last value."""
        return self.total_steps - 1

    def _pack_node(self, g, n):
        if len(self.tables) == 1:
            table = self.tables[0]
        elif len(self.tables) != n:
            raise ValueError(f"Expected {n} lr_lambdas, but got {len(self.tables)}")
        else:
            table = self.tables[g]
        return _node(_K_TABLE, (len(table),) + table)

    def __repr__(self):
        t = self.tables[0]
        head = ", ".join(f"{v:.6g}" for v in t[:3])
        groups = f", groups={len(self.tables)}" if len(self.tables) > 1 else ""
        return f"{type(self).__name__}(total_steps={self.total_steps}{groups}, table=[{head}, ...])"


def _lambdas(lr_lambda):
    fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda]
    if not fns:
        raise ValueError("lr_lambda must not be an empty list")
    for fn in fns:
        if not callable(fn):
            raise TypeError(f"lr_lambda should be a function, but got {type(fn).__name__}")
    return fns


class LambdaLR(_Tabulated):
    """lr = b * lr_lambda(k); lr_lambda (or one per group) is tabulated for k < total_steps. An optimizer
    refuses to step past the table (ValueError); lr_at past it gives the last value."""

    def __init__(self, lr_lambda, total_steps: int):
        fns = _lambdas(lr_lambda)
        total_steps = _check_pos_int("total_steps", total_steps)
        self._set(total_steps=total_steps,
                  tables=tuple(_tabulate("lr_lambda", fn, range(total_steps)) for fn in fns))


class MultiplicativeLR(_Tabulated):
    """lr = b * prod_{s=1..k} lr_lambda(s), tabulated for k < total_steps. An optimizer refuses to step past
    the table (ValueError); lr_at past it gives the last value."""

    def __init__(self, lr_lambda, total_steps: int):
        fns = _lambdas(lr_lambda)
        total_steps = _check_pos_int("total_steps", total_steps)
        tables = []
        for fn in fns:
            factors = _tabulate("lr_lambda", fn, range(1, total_steps))
            acc, table = 1.0, [1.0]
            for f in factors:
                acc *= f
                table.append(acc)
            tables.append(tuple(table))
        self._set(total_steps=total_steps, tables=tuple(tables))


class StepLR(Schedule):
    _fields = ("step_size", "gamma")

    def __init__(self, step_size: int, gamma: float = 0.1):
        self._set(step_size=_check_pos_int("step_size", step_size), gamma=_check_real("gamma", gamma))

    def _pack_node(self, g, n):
        return _node(_K_STEP, (self.step_size, self.gamma))


class MultiStepLR(Schedule):
    _fields = ("milestones", "gamma")

    def __init__(self, milestones: Iterable[int], gamma: float = 0.1):
        if isinstance(milestones, (str, bytes)) or not isinstance(milestones, Iterable):
            raise TypeError(f"milestones must be an iterable of integers, got {milestones!r}")
        ms = list(milestones)
        for m in ms:
            if not _is_int(m) or m < 0:
                raise ValueError(f"milestones must be non-negative integers, got {m!r}")
        self._set(milestones=tuple(sorted(int(m) for m in ms)), gamma=_check_real("gamma", gamma))

    def _pack_node(self, g, n):
        return _node(_K_MULTI_STEP, (self.gamma, len(self.milestones)) + self.milestones)


class ConstantLR(Schedule):
    _fields = ("factor", "total_iters")

    def __init__(self, factor: float = 1.0 / 3, total_iters: int = 5):
        factor = _check_real("factor", factor)
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self._set(factor=factor, total_iters=_check_nonneg_int("total_iters", total_iters))

    def _pack_node(self, g, n):
        return _node(_K_CONSTANT_FACTOR, (self.factor, self.total_iters))


class LinearLR(Schedule):
    _fields = ("start_factor", "end_factor", "total_iters")

    def __init__(self, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5):
        start_factor = _check_real("start_factor", start_factor)
        end_factor = _check_real("end_factor", end_factor)
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor (start_factor) expected to be greater than 0 "
                             "and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor (end_factor) expected to be between 0 and 1.")
        self._set(start_factor=start_factor, end_factor=end_factor,
                  total_iters=_check_pos_int("total_iters", total_iters))

    def _pack_node(self, g, n):
        return _node(_K_LINEAR, (self.start_factor, self.end_factor, self.total_iters))


class ExponentialLR(Schedule):
    _fields = ("gamma",)

    def __init__(self, gamma: float):
        self._set(gamma=_check_real("gamma", gamma))

    def _pack_node(self, g, n):
        return _node(_K_EXPONENTIAL, (self.gamma,))


class PolynomialLR(Schedule):
    _fields = ("total_iters", "power")

    def __init__(self, total_iters: int = 5, power: float = 1.0):
        self._set(total_iters=_check_pos_int("total_iters", total_iters), power=_check_real("power", power))

    def _pack_node(self, g, n):
        return _node(_K_POLYNOMIAL, (self.total_iters, self.power))


class CosineAnnealingLR(Schedule):
    """eta_min + (b - eta_min) * (1 + cos(pi k / T_max)) / 2, not clamped past T_max (as torch)."""

    _fields = ("T_max", "eta_min")

    def __init__(self, T_max: int, eta_min: float = 0.0):
        self._set(T_max=_check_pos_int("T_max", T_max), eta_min=_check_real("eta_min", eta_min))

    @property
    def _multiplicative(self):
        return self.eta_min == 0.0

    def _pack_node(self, g, n):
        return _node(_K_COSINE, (self.T_max, self.eta_min))


class CosineAnnealingWarmRestarts(Schedule):
    _fields = ("T_0", "T_mult", "eta_min")

    def __init__(self, T_0: int, T_mult: int = 1, eta_min: float = 0.0):
        if not _is_int(T_0) or T_0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if not _is_int(T_mult) or T_mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not _is_real(eta_min):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}")
        self._set(T_0=int(T_0), T_mult=int(T_mult), eta_min=_check_real("eta_min", eta_min))

    @property
    def _multiplicative(self):
        return self.eta_min == 0.0

    def _pack_node(self, g, n):
        return _node(_K_COSINE_WARM_RESTARTS, (self.T_0, self.T_mult, self.eta_min))


_CYCLIC_MODES = {"triangular": 0, "triangular2": 1, "exp_range": 2}


class _AbsoluteCyclic(Schedule):
    """CyclicLR and OneCycleLR: absolute lrs (not a multiple of the base, so not chainable), and
    momentum cycled when cycle_momentum is set."""

    @property
    def cycles_momentum(self):
        return self.cycle_momentum

    @property
    def _multiplicative(self):
        return False


class CyclicLR(_AbsoluteCyclic):
    """torch's CyclicLR. The lr does not depend on the group's lr: it cycles between base_lr and max_lr
    (floats or per-group lists). A custom ``scale_fn`` is tabulated over ``total_steps`` steps (default:
    ten cycles) by cycle number or by step, per ``scale_mode``; past the table its last value holds."""

    _fields = ("base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "scale_mode",
               "cycle_momentum", "base_momentum", "max_momentum")
    _hidden = ("scale_table",)

    def __init__(self, base_lr, max_lr, step_size_up: int = 2000, step_size_down=None,
                 mode: str = "triangular", gamma: float = 1.0, scale_fn=None, scale_mode: str = "cycle",
                 cycle_momentum: bool = True, base_momentum=0.8, max_momentum=0.9, *,
                 total_steps=None):
        base_lr = _real_or_list("base_lr", base_lr)
        max_lr = _real_or_list("max_lr", max_lr)
        up = _check_pos_int("step_size_up", step_size_up)
        down = up if step_size_down is None else _check_pos_int("step_size_down", step_size_down)
        if mode not in _CYCLIC_MODES and scale_fn is None:
            raise ValueError("mode is invalid and scale_fn is None")
        if scale_fn is not None and not callable(scale_fn):
            raise TypeError(f"scale_fn should be a function, but got {type(scale_fn).__name__}")
        if scale_mode not in ("cycle", "iterations"):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
        gamma = _check_real("gamma", gamma)
        if not isinstance(cycle_momentum, bool):
            raise TypeError(f"cycle_momentum must be a bool, got {cycle_momentum!r}")
        base_momentum = _real_or_list("base_momentum", base_momentum)
        max_momentum = _real_or_list("max_momentum", max_momentum)
        table = None
        if scale_fn is None:
            # torch's _init_scale_fn forces the scale mode of the built-in policies
            scale_mode = "iterations" if mode == "exp_range" else "cycle"
        else:
            total = up + down
            steps = (10 * total if total_steps is None
                     else _check_pos_int("total_steps", total_steps))
            if scale_mode == "cycle":
                table = _tabulate("scale_fn", scale_fn, range(1, (steps - 1) // total + 2))
            else:
                table = _tabulate("scale_fn", scale_fn, range(steps))
            mode = "custom"
        self._set(base_lr=base_lr, max_lr=max_lr, step_size_up=up, step_size_down=down, mode=mode,
                  gamma=gamma, scale_mode=scale_mode, cycle_momentum=cycle_momentum,
                  base_momentum=base_momentum, max_momentum=max_momentum, scale_table=table)

    def _group_count_hint(self):
        for v in (self.base_lr, self.max_lr, self.base_momentum, self.max_momentum):
            if isinstance(v, tuple):
                return len(v)
        return None

    def _pack_node(self, g, n):
        base = _per_group("base_lr", self.base_lr, g, n)
        top = _per_group("max_lr", self.max_lr, g, n)
        bm, mm = 0.0, 0.0
        if self.cycle_momentum:
            bm = _per_group("base_momentum", self.base_momentum, g, n)
            mm = _per_group("max_momentum", self.max_momentum, g, n)
        total = float(self.step_size_up) + float(self.step_size_down)
        ratio = float(self.step_size_up) / total
        scale = _CYCLIC_MODES.get(self.mode, 3)
        table = self.scale_table or ()
        params = (base, top, total, ratio, scale, self.gamma, 0 if self.scale_mode == "cycle" else 1,
                  1 if self.cycle_momentum else 0, bm, mm, len(table)) + tuple(table)
        return _node(_K_CYCLIC, params)


class OneCycleLR(_AbsoluteCyclic):
    """torch's OneCycleLR. Steps 0..total_steps follow the formula; ``max_step()`` is total_steps (an
    eager step beyond raises in the optimizer, as torch's scheduler does); in the kernels lr(T) holds."""

    _fields = ("max_lr", "total_steps", "pct_start", "anneal_strategy", "cycle_momentum",
               "base_momentum", "max_momentum", "div_factor", "final_div_factor", "three_phase")

    def __init__(self, max_lr, total_steps=None, epochs=None, steps_per_epoch=None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum=0.85, max_momentum=0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False):
        if total_steps is not None:
            if not _is_int(total_steps) or total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            total = int(total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            if not _is_int(epochs) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not _is_int(steps_per_epoch) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
            total = int(epochs) * int(steps_per_epoch)
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not isinstance(pct_start, float) or pct_start < 0 or pct_start > 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy}")
        if not isinstance(cycle_momentum, bool):
            raise TypeError(f"cycle_momentum must be a bool, got {cycle_momentum!r}")
        div_factor = _check_real("div_factor", div_factor)
        final_div_factor = _check_real("final_div_factor", final_div_factor)
        if div_factor == 0 or final_div_factor == 0:
            raise ValueError("div_factor and final_div_factor must be non-zero")
        self._set(max_lr=_real_or_list("max_lr", max_lr), total_steps=total, pct_start=pct_start,
                  anneal_strategy=anneal_strategy, cycle_momentum=cycle_momentum,
                  base_momentum=_real_or_list("base_momentum", base_momentum),
                  max_momentum=_real_or_list("max_momentum", max_momentum), div_factor=div_factor,
                  final_div_factor=final_div_factor, three_phase=bool(three_phase))

    def max_step(self):
        return self.total_steps

    def _group_count_hint(self):
        for v in (self.max_lr, self.base_momentum, self.max_momentum):
            if isinstance(v, tuple):
                return len(v)
        return None

    def _pack_node(self, g, n):
        top = _per_group("max_lr", self.max_lr, g, n)
        initial = top / self.div_factor
        low = initial / self.final_div_factor
        mm = bm = 0.0
        if self.cycle_momentum:
            mm = _per_group("max_momentum", self.max_momentum, g, n)
            bm = _per_group("base_momentum", self.base_momentum, g, n)
        T = self.total_steps
        if self.three_phase:
            phases = [(float(self.pct_start * T) - 1, initial, top, mm, bm),
                      (float(2 * self.pct_start * T) - 2, top, initial, bm, mm),
                      (T - 1, initial, low, mm, mm)]
        else:
            phases = [(float(self.pct_start * T) - 1, initial, top, mm, bm),
                      (T - 1, top, low, bm, mm)]
        params = [T, 0 if self.anneal_strategy == "cos" else 1, 1 if self.cycle_momentum else 0,
                  len(phases)]
        for ph in phases:
            params.extend(ph)
        return _node(_K_ONE_CYCLE, params)


class ReduceLROnPlateau(Schedule):
    """torch's ReduceLROnPlateau, fed through ``opt.report(metric)``; its state lives on the device."""

    _fields = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps")

    def __init__(self, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr=0, eps: float = 1e-8):
        factor = _check_real("factor", factor)
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        if mode not in ("min", "max"):
            raise ValueError(f"mode {mode} is unknown!")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold mode {threshold_mode} is unknown!")
        self._set(mode=mode, factor=factor, patience=_check_nonneg_int("patience", patience),
                  threshold=_check_real("threshold", threshold), threshold_mode=threshold_mode,
                  cooldown=_check_nonneg_int("cooldown", cooldown), min_lr=_real_or_list("min_lr", min_lr),
                  eps=_check_real("eps", eps))

    @property
    def is_plateau(self):
        return True

    @property
    def _multiplicative(self):
        return False

    def _group_count_hint(self):
        return len(self.min_lr) if isinstance(self.min_lr, tuple) else None

    def plateau_config(self, num_groups: int) -> list:
        """The ``config`` list of the plateau_report_ op."""
        if isinstance(self.min_lr, tuple):
            if len(self.min_lr) != num_groups:
                raise ValueError(f"expected {num_groups} min_lrs, got {len(self.min_lr)}")
            min_lrs = list(self.min_lr)
        else:
            min_lrs = [self.min_lr] * num_groups
        return [1.0 if self.mode == "max" else 0.0, self.factor, float(self.patience), self.threshold,
                1.0 if self.threshold_mode == "abs" else 0.0, float(self.cooldown), self.eps] + \
            [float(m) for m in min_lrs]

    def _pack_node(self, g, n):
        return _node(_K_PLATEAU)


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
    if need > _MAX_STACK:
        raise ValueError(f"{owner}: schedule nesting too deep ({need} > {_MAX_STACK} evaluation frames)")


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
        return _node(_K_SEQUENTIAL, (len(self.schedules),) + self.milestones,
                     [s._pack_node(g, n) for s in self.schedules])


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
        return _node(_K_CHAINED, (len(self.schedules),), [s._pack_node(g, n) for s in self.schedules])


class PerEpoch(Schedule):
    """``schedule`` evaluated at floor(step / steps_per_epoch) (``Schedule.per_epoch``)."""

    _fields = ("schedule", "steps_per_epoch")

    def __init__(self, schedule: Schedule, steps_per_epoch: int):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"per_epoch expects a lrfused Schedule, got {type(schedule).__name__}")
        if schedule.is_plateau or _contains_plateau(schedule):
            raise ValueError("per_epoch does not support ReduceLROnPlateau: it is driven by reported "
                             "metrics (opt.report), not by the step")
        self._set(schedule=schedule, steps_per_epoch=_check_pos_int("steps_per_epoch", steps_per_epoch))
        _check_stack("per_epoch", self._stack_need())

    @property
    def schedules(self):
        return (self.schedule,)

    @property
    def cycles_momentum(self):
        return self.schedule.cycles_momentum

    @property
    def _multiplicative(self):
        return self.schedule._multiplicative

    def _stack_need(self):
        return self.schedule._stack_need()

    def _group_count_hint(self):
        return self.schedule._group_count_hint()

    def max_step(self):
        m = self.schedule.max_step()
        return None if m is None else (m + 1) * self.steps_per_epoch - 1

    def _pack_node(self, g, n):
        return _node(_K_PER_EPOCH, (self.steps_per_epoch,), [self.schedule._pack_node(g, n)])


# ----------------------------------------------------------------------------------------------------
# HuggingFace transformers' named schedules


class HFSchedule(Schedule):
    """One of HuggingFace's named schedules (build it with ``get_schedule``): lr = b * m(k)."""

    _fields = ("name", "kwargs")
    _hidden = ("kind", "params", "multiplicative")

    def __init__(self, name: str, kwargs: tuple, kind: int, params: tuple, multiplicative: bool = True):
        self._set(name=name, kwargs=kwargs, kind=kind, params=tuple(float(p) for p in params),
                  multiplicative=multiplicative)

    @property
    def _multiplicative(self):
        return self.multiplicative

    def __repr__(self):
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs)
        return f"get_schedule({self.name!r}{args})"

    def _pack_node(self, g, n):
        return _node(self.kind, self.params)


HF_NAMES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
            "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
            "warmup_stable_decay")

_HF_KWARGS = {
    "constant": (),
    "constant_with_warmup": (),
    "linear": (),
    "cosine": ("num_cycles",),
    "cosine_with_restarts": ("num_cycles",),
    "polynomial": ("lr_end", "power", "lr_init"),
    "inverse_sqrt": ("timescale",),
    "cosine_with_min_lr": ("num_cycles", "min_lr", "min_lr_rate", "lr_init"),
    "cosine_warmup_with_min_lr": ("num_cycles", "min_lr", "min_lr_rate", "warmup_lr_rate", "lr_init"),
    "warmup_stable_decay": ("num_decay_steps", "num_stable_steps", "warmup_type", "decay_type",
                            "min_lr_ratio", "num_cycles"),
}

_WSD_TYPES = {"linear": 0, "cosine": 1, "1-sqrt": 2}


def _min_lr_rate(kw):
    min_lr, rate, lr_init = kw.get("min_lr"), kw.get("min_lr_rate"), kw.get("lr_init")
    if min_lr is not None and rate is not None:
        raise ValueError("Only one of min_lr or min_lr_rate should be set")
    if min_lr is not None:
        min_lr = _check_real("min_lr", min_lr)
        if lr_init is not None:
            return min_lr / lr_init, 0.0, 0.0, True
        return 0.0, min_lr, 1.0, False  # r = min_lr / the group's base lr, at evaluation
    if rate is None:
        raise ValueError("One of min_lr or min_lr_rate should be set through the `lr_scheduler_kwargs`")
    return _check_real("min_lr_rate", rate), 0.0, 0.0, True


def get_schedule(name: str, num_warmup_steps=None, num_training_steps=None, **kwargs) -> Schedule:
    """HuggingFace transformers' ``get_scheduler(name, ...)`` without the optimizer.

    Keyword arguments are HF's ``scheduler_specific_kwargs``. Where HF reads the optimizer's default lr
    (``polynomial``; ``min_lr`` of the ``cosine*_min_lr`` names) pass ``lr_init=`` to fix it; without it
    the group's own base lr is used, which is the same thing whenever groups use the default lr.
    """
    name = getattr(name, "value", name)
    if name not in HF_NAMES:
        raise ValueError(f"unknown schedule name {name!r}; expected one of {', '.join(HF_NAMES)}")
    if name == "reduce_lr_on_plateau":
        return ReduceLROnPlateau(**kwargs)
    allowed = _HF_KWARGS[name]
    unexpected = sorted(set(kwargs) - set(allowed))
    if unexpected:
        raise TypeError(f"get_schedule({name!r}) got unexpected keyword argument(s) {', '.join(unexpected)}; "
                        f"it accepts {', '.join(allowed) or 'none'}")
    if name == "constant":
        return Constant()
    if num_warmup_steps is None:
        raise ValueError(f"{name} requires `num_warmup_steps`, please provide that argument.")
    W = _check_nonneg_int("num_warmup_steps", num_warmup_steps)
    lr_init = kwargs.get("lr_init")
    if lr_init is not None:
        lr_init = _check_real("lr_init", lr_init)
        if lr_init <= 0:
            raise ValueError(f"lr_init must be positive, got {lr_init}")
    shown = (("num_warmup_steps", W),)

    def make(kind, params, multiplicative=True, extra=()):
        shown_kw = shown + extra + tuple((k, kwargs[k]) for k in allowed if k in kwargs)
        return HFSchedule(name, shown_kw, kind, params, multiplicative)

    if name == "constant_with_warmup":
        return make(_K_HF_CONSTANT_WITH_WARMUP, (W,))
    if name == "inverse_sqrt":
        timescale = kwargs.get("timescale")
        if timescale is None:
            timescale = W or 10_000
        timescale = _check_pos_int("timescale", timescale)
        return make(_K_HF_INVERSE_SQRT, (W, timescale))
    if name == "warmup_stable_decay":
        if "num_decay_steps" not in kwargs:
            raise ValueError("warmup_stable_decay requires `num_decay_steps`, please provide that argument.")
        D = _check_nonneg_int("num_decay_steps", kwargs["num_decay_steps"])
        S = kwargs.get("num_stable_steps")
        if num_training_steps is None and S is None:
            raise ValueError("Either num_training_steps or num_stable_steps must be specified.")
        if S is None:
            S = _check_nonneg_int("num_training_steps", num_training_steps) - W - D
        elif not _is_int(S):
            raise ValueError(f"Expected integer num_stable_steps, but got {S!r}")
        wt, dt = kwargs.get("warmup_type", "linear"), kwargs.get("decay_type", "cosine")
        if wt not in _WSD_TYPES:
            raise ValueError(f"Unknown warmup type: {wt}, expected 'linear', 'cosine' or '1-sqrt'")
        if dt not in _WSD_TYPES:
            raise ValueError(f"Unknown decay type: {dt}, expected 'linear', 'cosine' or '1-sqrt'")
        r = _check_real("min_lr_ratio", kwargs.get("min_lr_ratio", 0.0))
        cycles = _check_real("num_cycles", kwargs.get("num_cycles", 0.5))
        extra = (("num_training_steps", num_training_steps),) if num_training_steps is not None else ()
        return make(_K_HF_WSD, (W, int(S), D, _WSD_TYPES[wt], _WSD_TYPES[dt], r, cycles), extra=extra)

    if num_training_steps is None:
        raise ValueError(f"{name} requires `num_training_steps`, please provide that argument.")
    T = _check_nonneg_int("num_training_steps", num_training_steps)
    extra = (("num_training_steps", T),)
    if name == "linear":
        return make(_K_HF_LINEAR, (W, T), extra=extra)
    if name == "cosine":
        return make(_K_HF_COSINE, (W, T, _check_real("num_cycles", kwargs.get("num_cycles", 0.5)),
                                   0.0, 0.0, 0.0), extra=extra)
    if name == "cosine_with_restarts":
        return make(_K_HF_COSINE_RESTARTS, (W, T, _check_real("num_cycles", kwargs.get("num_cycles", 1))),
                    extra=extra)
    if name == "polynomial":
        lr_end = _check_real("lr_end", kwargs.get("lr_end", 1e-7))
        power = _check_real("power", kwargs.get("power", 1.0))
        if lr_init is not None and not lr_init > lr_end:
            raise ValueError(f"lr_end ({lr_end}) must be smaller than initial lr ({lr_init})")
        return make(_K_HF_POLYNOMIAL, (W, T, lr_end, power, lr_init or 0.0),
                    multiplicative=lr_init is not None, extra=extra)
    cycles = _check_real("num_cycles", kwargs.get("num_cycles", 0.5))
    rate, min_lr, use_min_lr, mult = _min_lr_rate(kwargs)
    if name == "cosine_with_min_lr":
        return make(_K_HF_COSINE, (W, T, cycles, rate, min_lr, use_min_lr), multiplicative=mult,
                    extra=extra)
    wr = kwargs.get("warmup_lr_rate")
    has_wr = wr is not None
    wr = _check_real("warmup_lr_rate", wr) if has_wr else 0.0
    return make(_K_HF_COSINE_WARMUP_MIN_LR, (W, T, cycles, rate, min_lr, use_min_lr, 1.0 if has_wr else 0.0,
                                             wr), multiplicative=mult, extra=extra)


# ----------------------------------------------------------------------------------------------------
# from torch

# HF's lr_lambda functions (functools.partial objects inside a torch LambdaLR) -> names.
_HF_LAMBDA_NAMES = {
    "_get_constant_lambda": "constant",
    "_get_constant_schedule_with_warmup_lr_lambda": "constant_with_warmup",
    "_get_linear_schedule_with_warmup_lr_lambda": "linear",
    "_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda": "cosine_with_restarts",
    "_get_polynomial_decay_schedule_with_warmup_lr_lambda": "polynomial",
    "_get_inverse_sqrt_schedule_lr_lambda": "inverse_sqrt",
    "_get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda": "cosine_warmup_with_min_lr",
    "_get_wsd_scheduler_lambda": "warmup_stable_decay",
}


def _from_hf_lambda(fn):
    """The exact schedule of a HuggingFace lr lambda, or None when ``fn`` is not one."""
    if fn is not None and not isinstance(fn, functools.partial):
        fname = getattr(fn, "__name__", "")
        if fname == "_get_constant_lambda" and getattr(fn, "__module__", "").startswith("transformers"):
            return Constant()
        return None
    if fn is None or not getattr(fn.func, "__module__", "").startswith("transformers"):
        return None
    fname = fn.func.__name__
    kw = dict(fn.keywords)
    if fname == "_get_cosine_schedule_with_warmup_lr_lambda":
        name = "cosine_with_min_lr" if "min_lr_rate" in kw else "cosine"
    else:
        name = _HF_LAMBDA_NAMES.get(fname)
    if name is None or fn.args:
        return None
    W = kw.pop("num_warmup_steps", None)
    T = kw.pop("num_training_steps", None)
    if name == "cosine_warmup_with_min_lr" and kw.get("warmup_lr_rate") is None:
        kw.pop("warmup_lr_rate", None)
    if name == "warmup_stable_decay":
        return get_schedule(name, W, None, **kw)
    return get_schedule(name, W, T, **kw)


def _tabulated_from_torch(cls, fns, total_steps, explicit: bool = True):
    hf = [_from_hf_lambda(fn) for fn in fns] if cls is LambdaLR else [None]
    if all(h is not None for h in hf) and all(h == hf[0] for h in hf):
        return hf[0]
    if not explicit:
        warnings.warn(f"lrfused: from_torch tabulated the {cls.__name__} lambda for {total_steps} steps (steps "
                      f"0..{total_steps - 1}); an optimizer refuses to step past the table. Pass total_steps= "
                      f"to choose the horizon.", stacklevel=3)
    if all(fn is fns[0] for fn in fns):  # torch repeats a single lambda once per group
        fns = fns[:1]
    return cls(fns if len(fns) > 1 else fns[0], total_steps)


def _one(values):
    values = list(values)
    return values[0] if all(v == values[0] for v in values) else list(values)


def from_torch(scheduler, total_steps: int | None = None) -> Schedule:
    """The lrfused schedule equivalent to a constructed ``torch.optim.lr_scheduler`` object.

    Reads the scheduler's configuration (not its position: the schedule starts at step 0). Python
    callables (LambdaLR / MultiplicativeLR lambdas, a CyclicLR ``scale_fn``) are tabulated for
    ``total_steps`` steps (default ``DEFAULT_TABULATE_STEPS``, with a warning that says so); an optimizer
    refuses to step past a LambdaLR / MultiplicativeLR table (ValueError), and a CyclicLR's scale table
    holds its last value. HuggingFace's lambdas are recognised and mapped to their exact
    ``get_schedule`` form instead, which has no horizon.
    """
    lrs = torch.optim.lr_scheduler
    steps = DEFAULT_TABULATE_STEPS if total_steps is None else _check_pos_int("total_steps", total_steps)
    s = scheduler
    if isinstance(s, lrs.SequentialLR):
        return SequentialLR([from_torch(c, total_steps) for c in s._schedulers], list(s._milestones))
    if isinstance(s, lrs.ChainedScheduler):
        return ChainedScheduler([from_torch(c, total_steps) for c in s._schedulers])
    if isinstance(s, lrs.ReduceLROnPlateau):
        min_lr = s.default_min_lr if s.default_min_lr is not None else list(s.min_lrs)
        return ReduceLROnPlateau(mode=s.mode, factor=s.factor, patience=s.patience, threshold=s.threshold,
                                 threshold_mode=s.threshold_mode, cooldown=s.cooldown, min_lr=min_lr,
                                 eps=s.eps)
    if isinstance(s, lrs.LambdaLR):
        return _tabulated_from_torch(LambdaLR, list(s.lr_lambdas), steps, total_steps is not None)
    if isinstance(s, lrs.MultiplicativeLR):
        return _tabulated_from_torch(MultiplicativeLR, list(s.lr_lambdas), steps, total_steps is not None)
    if isinstance(s, lrs.StepLR):
        return StepLR(s.step_size, s.gamma)
    if isinstance(s, lrs.MultiStepLR):
        return MultiStepLR(sorted(s.milestones.elements()), s.gamma)
    if isinstance(s, lrs.ConstantLR):
        return ConstantLR(s.factor, s.total_iters)
    if isinstance(s, lrs.LinearLR):
        return LinearLR(s.start_factor, s.end_factor, s.total_iters)
    if isinstance(s, lrs.ExponentialLR):
        return ExponentialLR(s.gamma)
    if isinstance(s, lrs.PolynomialLR):
        return PolynomialLR(s.total_iters, s.power)
    if isinstance(s, lrs.CosineAnnealingWarmRestarts):
        return CosineAnnealingWarmRestarts(s.T_0, s.T_mult, s.eta_min)
    if isinstance(s, lrs.CosineAnnealingLR):
        return CosineAnnealingLR(s.T_max, s.eta_min)
    if isinstance(s, lrs.CyclicLR):
        up = round(s.total_size * s.step_ratio)
        down = round(s.total_size - up)
        kw = {}
        if s.cycle_momentum:
            kw = dict(base_momentum=_one(s.base_momentums), max_momentum=_one(s.max_momentums))
        custom = s._scale_fn_custom
        return CyclicLR(_one(s.base_lrs), _one(s.max_lrs), up, down, mode=s.mode, gamma=s.gamma,
                        scale_fn=custom, scale_mode=s.scale_mode, cycle_momentum=s.cycle_momentum,
                        total_steps=steps if custom is not None else None, **kw)
    if isinstance(s, lrs.OneCycleLR):
        groups = s.optimizer.param_groups
        g0 = groups[0]
        phases = s._schedule_phases
        kw = {}
        if s.cycle_momentum:
            kw = dict(base_momentum=_one(g["base_momentum"] for g in groups),
                      max_momentum=_one(g["max_momentum"] for g in groups))
        return OneCycleLR(_one(g["max_lr"] for g in groups), total_steps=s.total_steps,
                          pct_start=float((phases[0]["end_step"] + 1) / s.total_steps),
                          anneal_strategy=s._anneal_func_type, cycle_momentum=s.cycle_momentum,
                          div_factor=g0["max_lr"] / g0["initial_lr"],
                          final_div_factor=g0["initial_lr"] / g0["min_lr"],
                          three_phase=len(phases) == 3, **kw)
    raise TypeError(f"from_torch: unsupported scheduler type {type(s).__name__}")


# ----------------------------------------------------------------------------------------------------
# plotting


def _named(schedules) -> dict:
    if isinstance(schedules, Schedule):
        return {repr(schedules): schedules}
    if isinstance(schedules, dict):
        return dict(schedules)
    return {repr(s): s for s in schedules}


def plot(schedules, num_steps: int, path, base_lr: float = 1.0, *, title: str | None = None):
    """Write a PNG of lr (and momentum, where a schedule cycles it) against the step.

    ``schedules``: one Schedule, a list of them, or a dict name -> Schedule."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    named = _named(schedules)
    if not named:
        raise ValueError("plot needs at least one schedule")
    num_steps = _check_pos_int("num_steps", num_steps)
    with_m = any(s.cycles_momentum for s in named.values())
    fig, axes = plt.subplots(2 if with_m else 1, 1, sharex=True, squeeze=False,
                             figsize=(8, 6 if with_m else 4))
    steps = list(range(num_steps))
    for name, s in named.items():
        axes[0][0].plot(steps, s.lrs(num_steps, base_lr).numpy(), label=name, linewidth=1.4)
        if with_m and s.cycles_momentum:
            axes[1][0].plot(steps, s.momenta(num_steps, float("nan")).numpy(), label=name, linewidth=1.4)
    axes[0][0].set_ylabel("lr")
    axes[0][0].grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="best")
    if title:
        axes[0][0].set_title(title)
    if with_m:
        axes[1][0].set_ylabel("momentum / beta1")
        axes[1][0].grid(alpha=0.3)
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
