"""``from_torch``: the lrfused schedule equivalent to a constructed torch.optim.lr_scheduler object."""
from __future__ import annotations

import functools
import warnings

import torch

from .base import DEFAULT_TABULATE_STEPS, Constant, Schedule, _check_pos_int
from .composites import ChainedScheduler, SequentialLR
from .hf import get_schedule
from .torch_policies import (ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, CyclicLR, ExponentialLR,
                             LambdaLR, LinearLR, MultiplicativeLR, MultiStepLR, OneCycleLR, PolynomialLR,
                             ReduceLROnPlateau, StepLR)

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


