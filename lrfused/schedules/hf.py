"""HuggingFace transformers' named schedules: ``get_schedule(name, ...)`` without the optimizer."""
from __future__ import annotations

import torch

from .. import contract
from .base import (Constant, Schedule, _check_int, _check_nonneg_int, _check_pos_int, _check_real, _is_int,
                   _real_or_list)
from .torch_policies import ReduceLROnPlateau

# ----------------------------------------------------------------------------------------------------
# HuggingFace transformers' named schedules


class HFSchedule(Schedule):
    """One of HuggingFace's named schedules (build it with ``get_schedule``): lr = b * m(k)."""

    _fields = ("name", "kwargs")
    _hidden = ("kind", "params", "multiplicative")

    def __init__(self, name: str, kwargs: tuple, kind: str, fields: dict, multiplicative: bool = True):
        # kept as the kind's id and its fields in the contract's slot order (what checkpoints hold)
        self._set(name=name, kwargs=kwargs, kind=getattr(contract.KIND, kind),
                  params=tuple(float(fields[f]) for f in contract.FIELDS[kind]), multiplicative=multiplicative)

    @property
    def _multiplicative(self):
        return self.multiplicative

    def __repr__(self):
        args = "".join(f", {k}={v!r}" for k, v in self.kwargs)
        return f"get_schedule({self.name!r}{args})"

    def _pack_node(self, g, n):
        kind = contract.KIND_NAMES[self.kind]
        return contract.node(kind, dict(zip(contract.FIELDS[kind], self.params)))


class GreedyLR(ReduceLROnPlateau):
    """HuggingFace's GreedyLR (``get_schedule("greedy", ...)``), fed through ``opt.report(metric)``: the lr
    goes down by ``factor`` after ``patience`` bad reports and up (÷ factor) after ``patience`` good ones,
    within [min_lr, max_lr]; after ``reset_start`` reductions with every group at min_lr, it starts over
    from the groups' initial lrs. ``smooth`` averages the metric over the last ``window_size`` reports. Its
    state lives on the device (greedy_report_). ``verbose`` is accepted and prints nothing: the lr changes
    on the device."""

    _fields = ("mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "warmup", "min_lr",
               "max_lr", "eps", "verbose", "smooth", "window_size", "reset_start")

    def __init__(self, mode: str = "min", factor: float = 0.95, patience: int = 10, threshold: float = 1e-6,
                 threshold_mode: str = "abs", cooldown: int = 0, warmup: int = 0, min_lr=1e-3, max_lr=1.0,
                 eps: float = 1e-8, verbose: bool = False, smooth: bool = False, window_size: int = 50,
                 reset_start: int = 500):
        super().__init__(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)
        # the window is used (and must hold a value) only with smooth, as in HF
        window_size = _check_pos_int("window_size", window_size) if smooth else _check_nonneg_int("window_size", window_size)
        self._set(warmup=_check_nonneg_int("warmup", warmup), max_lr=_real_or_list("max_lr", max_lr),
                  verbose=bool(verbose), smooth=bool(smooth), window_size=window_size,
                  reset_start=_check_int("reset_start", reset_start))

    def _group_count_hint(self):
        lists = [v for v in (self.min_lr, self.max_lr) if isinstance(v, tuple)]
        return len(lists[0]) if lists else None

    def _lists(self, name, value, num_groups):
        if isinstance(value, tuple):
            if len(value) != num_groups:
                raise ValueError(f"expected {num_groups} {name}s, got {len(value)}")
            return list(value)
        return [value] * num_groups

    def greedy_config(self, base_lrs) -> list:
        """The ``config`` list of the greedy_report_ op for groups whose initial lrs are ``base_lrs``."""
        n = len(base_lrs)
        fields = dict(mode_is_max=self.mode == "max", factor=self.factor, patience=self.patience,
                      threshold=self.threshold, threshold_is_abs=self.threshold_mode == "abs", cooldown=self.cooldown,
                      warmup=self.warmup, eps=self.eps, reset_start=self.reset_start, smooth=self.smooth,
                      window_size=self.window_size)
        return contract.greedy_config(fields, self._lists("min_lr", self.min_lr, n),
                                      self._lists("max_lr", self.max_lr, n), base_lrs)

    def plateau_config(self, num_groups: int) -> list:
        raise ValueError("GreedyLR is fed through greedy_report_ (greedy_config), not plateau_report_")

    def _report_state_size(self) -> int:
        return contract.greedy_state_size(self.window_size if self.smooth else 0)

    def _report_config(self, base_lrs) -> list:
        return self.greedy_config(base_lrs)

    def _report(self, sched_state, report_state, metric, config, num_groups) -> None:
        torch.ops.lrfused.greedy_report_(sched_state, report_state, metric, config, num_groups)


HF_NAMES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
            "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
            "warmup_stable_decay", "greedy")

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

_WSD_SHAPES = contract.ENUMS["wsd_shape"]
_WSD_TYPES = {"linear": _WSD_SHAPES["LINEAR"], "cosine": _WSD_SHAPES["COSINE"], "1-sqrt": _WSD_SHAPES["ONE_MINUS_SQRT"]}


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
    if name == "greedy":
        return GreedyLR(**kwargs)
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

    def make(kind, fields, multiplicative=True, extra=()):
        shown_kw = shown + extra + tuple((k, kwargs[k]) for k in allowed if k in kwargs)
        return HFSchedule(name, shown_kw, kind, fields, multiplicative)

    if name == "constant_with_warmup":
        return make("HF_CONSTANT_WITH_WARMUP", dict(warmup=W))
    if name == "inverse_sqrt":
        timescale = kwargs.get("timescale")
        if timescale is None:
            timescale = W or 10_000
        timescale = _check_pos_int("timescale", timescale)
        return make("HF_INVERSE_SQRT", dict(warmup=W, timescale=timescale))
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
        return make("HF_WSD", dict(warmup=W, stable=int(S), decay=D, warmup_type=_WSD_TYPES[wt],
                                   decay_type=_WSD_TYPES[dt], min_lr_ratio=r, num_cycles=cycles), extra=extra)

    if num_training_steps is None:
        raise ValueError(f"{name} requires `num_training_steps`, please provide that argument.")
    T = _check_nonneg_int("num_training_steps", num_training_steps)
    extra = (("num_training_steps", T),)
    if name == "linear":
        return make("HF_LINEAR", dict(warmup=W, total=T), extra=extra)
    if name == "cosine":
        cycles = _check_real("num_cycles", kwargs.get("num_cycles", 0.5))
        return make("HF_COSINE", dict(warmup=W, total=T, num_cycles=cycles, min_lr_rate=0.0, min_lr=0.0, use_min_lr=0.0),
                    extra=extra)
    if name == "cosine_with_restarts":
        cycles = _check_real("num_cycles", kwargs.get("num_cycles", 1))
        return make("HF_COSINE_RESTARTS", dict(warmup=W, total=T, num_cycles=cycles), extra=extra)
    if name == "polynomial":
        lr_end = _check_real("lr_end", kwargs.get("lr_end", 1e-7))
        power = _check_real("power", kwargs.get("power", 1.0))
        if lr_init is not None and not lr_init > lr_end:
            raise ValueError(f"lr_end ({lr_end}) must be smaller than initial lr ({lr_init})")
        return make("HF_POLYNOMIAL", dict(warmup=W, total=T, lr_end=lr_end, power=power, lr_init=lr_init or 0.0),
                    multiplicative=lr_init is not None, extra=extra)
    cycles = _check_real("num_cycles", kwargs.get("num_cycles", 0.5))
    rate, min_lr, use_min_lr, mult = _min_lr_rate(kwargs)
    if name == "cosine_with_min_lr":
        return make("HF_COSINE", dict(warmup=W, total=T, num_cycles=cycles, min_lr_rate=rate, min_lr=min_lr,
                                      use_min_lr=use_min_lr), multiplicative=mult,
                    extra=extra)
    wr = kwargs.get("warmup_lr_rate")
    has_wr = wr is not None
    wr = _check_real("warmup_lr_rate", wr) if has_wr else 0.0
    return make("HF_COSINE_WARMUP_MIN_LR", dict(warmup=W, total=T, num_cycles=cycles, min_lr_rate=rate, min_lr=min_lr,
                                                use_min_lr=use_min_lr, has_warmup_rate=1.0 if has_wr else 0.0,
                                                warmup_lr_rate=wr), multiplicative=mult, extra=extra)


