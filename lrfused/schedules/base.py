"""The Schedule base class, argument checks shared by every policy, and packing through the contract."""
from __future__ import annotations

import math
import numbers
from typing import Callable, Iterable

import torch

from .. import _ops
from .. import contract

#: How many steps a Python callable (a LambdaLR / MultiplicativeLR lambda, a CyclicLR scale_fn) is
#: tabulated for when the caller does not say (``from_torch(..., total_steps=...)``). Past the table the
#: last value holds.
DEFAULT_TABULATE_STEPS = 10_000

# ----------------------------------------------------------------------------------------------------
# argument checks


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_int(name: str, v) -> int:
    if not _is_int(v):
        raise TypeError(f"{name} must be an integer, got {v!r}")
    return int(v)


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

    def program(self, group_index: int = 0, num_groups: int = 1) -> torch.Tensor:
        """The packed float64 CPU program of this schedule for param group ``group_index`` of ``num_groups``
        (a fresh tensor the caller may move or keep): what the ops take as ``program``."""
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
    def _evaluate(self, op, steps: torch.Tensor, value: float, group: int, num_groups) -> torch.Tensor:
        program = self._host_program(group) if num_groups is None else self._program(group, num_groups)
        return op(program, steps, float(value))

    # ``group`` picks the entry of per-group list arguments (of ``num_groups`` groups; by default as many as
    # the lists have).
    def lrs(self, num_steps: int, base_lr: float = 1.0, *, group: int = 0, num_groups=None) -> torch.Tensor:
        """lr at steps 0 .. num_steps-1 (float64)."""
        steps = torch.arange(_check_nonneg_int("num_steps", num_steps), dtype=torch.int64)
        return self._evaluate(torch.ops.lrfused.schedule_lrs, steps, base_lr, group, num_groups)

    def lr_at(self, step: int, base_lr: float = 1.0, *, group: int = 0, num_groups=None) -> float:
        steps = torch.tensor([_check_nonneg_int("step", step)], dtype=torch.int64)
        return float(self._evaluate(torch.ops.lrfused.schedule_lrs, steps, base_lr, group, num_groups)[0])

    def momenta(self, num_steps: int, fallback: float = 0.0, *, group: int = 0, num_groups=None) -> torch.Tensor:
        """Scheduled momentum (SGD momentum / Adam beta1) at steps 0 .. num_steps-1, else ``fallback``."""
        steps = torch.arange(_check_nonneg_int("num_steps", num_steps), dtype=torch.int64)
        return self._evaluate(torch.ops.lrfused.schedule_momenta, steps, fallback, group, num_groups)

    def momentum_at(self, step: int, fallback: float = 0.0, *, group: int = 0, num_groups=None) -> float:
        steps = torch.tensor([_check_nonneg_int("step", step)], dtype=torch.int64)
        return float(self._evaluate(torch.ops.lrfused.schedule_momenta, steps, fallback, group, num_groups)[0])

    def per_epoch(self, steps_per_epoch: int) -> "Schedule":
        """This schedule evaluated at floor(step / steps_per_epoch)."""
        from .composites import PerEpoch  # composites build on this module

        return PerEpoch(self, steps_per_epoch)

    def clamp(self, min_lr=None, max_lr=None) -> "Schedule":
        """This schedule's lr kept inside [min_lr, max_lr] (either bound may be None)."""
        from .composites import Clamp

        return Clamp(self, min_lr, max_lr)

    def restart(self, period: int) -> "Schedule":
        """This schedule restarted every ``period`` steps (evaluated at step mod period)."""
        from .composites import Restart

        return Restart(self, period)


class Constant(Schedule):
    """No schedule: the group's base lr at every step."""

    def __init__(self):
        pass

    def _pack_node(self, g, n):
        return contract.node("CONSTANT", {})


