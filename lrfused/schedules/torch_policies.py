"""torch.optim.lr_scheduler's policies (same class names, arguments and defaults, minus the optimizer)."""
from __future__ import annotations

from typing import Iterable

import torch

from .. import contract
from .base import (Schedule, _check_nonneg_int, _check_pos_int, _check_real, _is_int, _is_real, _per_group,
                   _real_or_list, _tabulate)

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
        return contract.node("TABLE", {"count": len(table)}, tail=table)

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
        return contract.node("STEP", {"step_size": self.step_size, "gamma": self.gamma})


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
        return contract.node("MULTI_STEP", {"gamma": self.gamma, "count": len(self.milestones)}, tail=self.milestones)


class ConstantLR(Schedule):
    _fields = ("factor", "total_iters")

    def __init__(self, factor: float = 1.0 / 3, total_iters: int = 5):
        factor = _check_real("factor", factor)
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self._set(factor=factor, total_iters=_check_nonneg_int("total_iters", total_iters))

    def _pack_node(self, g, n):
        return contract.node("CONSTANT_FACTOR", {"factor": self.factor, "total_iters": self.total_iters})


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
        return contract.node("LINEAR", {"start_factor": self.start_factor, "end_factor": self.end_factor,
                                       "total_iters": self.total_iters})


class ExponentialLR(Schedule):
    _fields = ("gamma",)

    def __init__(self, gamma: float):
        self._set(gamma=_check_real("gamma", gamma))

    def _pack_node(self, g, n):
        return contract.node("EXPONENTIAL", {"gamma": self.gamma})


class PolynomialLR(Schedule):
    _fields = ("total_iters", "power")

    def __init__(self, total_iters: int = 5, power: float = 1.0):
        self._set(total_iters=_check_pos_int("total_iters", total_iters), power=_check_real("power", power))

    def _pack_node(self, g, n):
        return contract.node("POLYNOMIAL", {"total_iters": self.total_iters, "power": self.power})


class CosineAnnealingLR(Schedule):
    """eta_min + (b - eta_min) * (1 + cos(pi k / T_max)) / 2, not clamped past T_max (as torch)."""

    _fields = ("T_max", "eta_min")

    def __init__(self, T_max: int, eta_min: float = 0.0):
        self._set(T_max=_check_pos_int("T_max", T_max), eta_min=_check_real("eta_min", eta_min))

    @property
    def _multiplicative(self):
        return self.eta_min == 0.0

    def _pack_node(self, g, n):
        return contract.node("COSINE", {"T_max": self.T_max, "eta_min": self.eta_min})


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
        return contract.node("COSINE_WARM_RESTARTS", {"T_0": self.T_0, "T_mult": self.T_mult, "eta_min": self.eta_min})


_SCALES = contract.ENUMS["cyclic_scale"]
# torch's CyclicLR modes; a custom scale_fn is tabulated (the TABLE scale)
_CYCLIC_MODES = {"triangular": _SCALES["TRIANGULAR"], "triangular2": _SCALES["TRIANGULAR2"],
                 "exp_range": _SCALES["EXP_RANGE"]}


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
        scale = _CYCLIC_MODES.get(self.mode, _SCALES["TABLE"])
        table = self.scale_table or ()
        fields = dict(base_lr=base, max_lr=top, total_size=total, step_ratio=ratio, scale=scale, gamma=self.gamma,
                      scale_mode=0 if self.scale_mode == "cycle" else 1, cycle_momentum=1 if self.cycle_momentum else 0,
                      base_momentum=bm, max_momentum=mm, count=len(table))
        return contract.node("CYCLIC", fields, tail=table)


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
        if float(pct_start * total) - 1 == 0:
            # the first phase ends at step 0: torch divides 0 by 0 at its first step (ZeroDivisionError)
            raise ValueError(f"OneCycleLR: pct_start * total_steps = {pct_start} * {total} = 1 leaves the first "
                             f"phase without steps (torch raises ZeroDivisionError here)")
        self._set(max_lr=_real_or_list("max_lr", max_lr), total_steps=total, pct_start=pct_start,
                  anneal_strategy=anneal_strategy, cycle_momentum=cycle_momentum,
                  base_momentum=_real_or_list("base_momentum", base_momentum),
                  max_momentum=_real_or_list("max_momentum", max_momentum), div_factor=div_factor,
                  final_div_factor=final_div_factor, three_phase=bool(three_phase))

    def _phase_ends(self) -> list:
        """torch's _schedule_phases' end steps."""
        T = self.total_steps
        if self.three_phase:
            return [float(self.pct_start * T) - 1, float(2 * self.pct_start * T) - 2, T - 1]
        return [float(self.pct_start * T) - 1, T - 1]

    def max_step(self):
        """total_steps, as torch allows; total_steps - 1 when the last phase has no steps (pct_start = 1), where
        torch's step total_steps divides by zero."""
        ends = self._phase_ends()
        return self.total_steps - 1 if ends[-1] == ends[-2] else self.total_steps

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

        def phase(end_step, start_lr, end_lr, start_momentum, end_momentum):  # torch's _schedule_phases
            return contract.record("ONE_CYCLE_PHASE", dict(end_step=end_step, start_lr=start_lr, end_lr=end_lr,
                                                           start_momentum=start_momentum, end_momentum=end_momentum))

        ends = self._phase_ends()
        if self.three_phase:
            phases = [phase(ends[0], initial, top, mm, bm), phase(ends[1], top, initial, bm, mm),
                      phase(ends[2], initial, low, mm, mm)]
        else:
            phases = [phase(ends[0], initial, top, mm, bm), phase(ends[1], top, low, bm, mm)]
        anneal = contract.ENUMS["anneal"]["COS" if self.anneal_strategy == "cos" else "LINEAR"]
        fields = dict(total_steps=T, anneal=anneal, cycle_momentum=1 if self.cycle_momentum else 0, count=len(phases))
        tail = [v for ph in phases for v in ph]
        return contract.node("ONE_CYCLE", fields, tail=tail)


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
        fields = dict(mode_is_max=self.mode == "max", factor=self.factor, patience=self.patience,
                      threshold=self.threshold, threshold_is_abs=self.threshold_mode == "abs", cooldown=self.cooldown,
                      eps=self.eps)
        return contract.plateau_config(fields, min_lrs)

    # ---- what opt.report() runs --------------------------------------------------------------------
    def _report_state_size(self) -> int:
        """Slots of the float64 state the metric machine keeps besides sched_state (0: none)."""
        return 0

    def _report_config(self, base_lrs) -> list:
        """The op's config for groups whose initial lrs are ``base_lrs`` (raises on a per-group list mismatch)."""
        return self.plateau_config(len(base_lrs))

    def _report(self, sched_state, report_state, metric, config, num_groups) -> None:
        torch.ops.lrfused.plateau_report_(sched_state, metric, config, num_groups)

    def _pack_node(self, g, n):
        return contract.node("PLATEAU", {})


