"""timm's schedulers (``timm.scheduler``), same class names, argument names and defaults, minus the optimizer;
``from_timm(scheduler)`` converts a constructed one.

timm steps its schedulers itself, with an explicit ``t``: ``step(epoch)`` at the end of each epoch
(``t_in_epochs=True``) or ``step_update(num_updates)`` after each update (``t_in_epochs=False``). Step k of a
lrfused optimizer applies what that loop leaves in the optimizer: timm's ``_get_lr(t)`` plus its noise, with
t the epoch of step k (``steps_per_epoch`` is then required) or t = k; at t = 0 the value timm's constructor
sets (``warmup_lr_init`` with a warmup, else the group's lr).

Noise: timm seeds a ``torch.Generator`` with ``noise_seed + t`` and draws from it on the host. lrfused draws
the same numbers, with the same generator, when the schedule is packed, into a table the kernels read: the
numbers are timm's own, bit for bit. A table needs an end: a ``noise_range_t`` of ``[start, end)`` has one;
a bare ``start`` (noise forever) needs ``noise_horizon_t``, and past it no noise is applied (timm would go on).
"""
from __future__ import annotations


import torch

from .. import contract
from .base import Schedule, _check_nonneg_int, _check_pos_int, _check_real, _is_int, _is_real, _tabulate

_SHAPES = contract.ENUMS["timm_shape"]


def _timm_noise(t: int, noise_type: str, noise_pct: float, noise_std: float, noise_seed: int) -> float:
    """timm.scheduler.Scheduler._calculate_noise(t), the same draws from the same generator."""
    g = torch.Generator()
    g.manual_seed(noise_seed + t)
    if noise_type == "normal":
        while True:
            noise = torch.randn(1, generator=g).item() * noise_std
            if abs(noise) < noise_pct:
                return noise
    return 2 * (torch.rand(1, generator=g).item() - 0.5) * noise_pct


class _TimmScheduler(Schedule):
    """One of timm's schedulers: lr(k) = timm's value at t(k), base value = the group's lr."""

    _shape = ""
    _fields = ()  # the subclass's signature, then the stepping and noise options
    _common = ("t_in_epochs", "steps_per_epoch", "noise_range_t", "noise_type", "noise_pct", "noise_std",
               "noise_seed", "noise_horizon_t")
    _hidden = _common  # compared and pickled with the signature's fields (shown by __repr__ below)

    def _init_common(self, warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs, steps_per_epoch, noise_range_t,
                     noise_type, noise_pct, noise_std, noise_seed, noise_horizon_t):
        warmup_t = _check_nonneg_int("warmup_t", warmup_t)
        warmup_lr_init = _check_real("warmup_lr_init", warmup_lr_init)
        if not isinstance(t_in_epochs, bool):
            raise TypeError(f"t_in_epochs must be a bool, got {t_in_epochs!r}")
        if t_in_epochs:
            if steps_per_epoch is None:
                raise ValueError("steps_per_epoch is required with t_in_epochs=True: lrfused counts optimizer "
                                 "steps, timm counts epochs")
            steps_per_epoch = _check_pos_int("steps_per_epoch", steps_per_epoch)
        elif steps_per_epoch is not None:
            raise ValueError("steps_per_epoch applies only with t_in_epochs=True")
        if noise_type not in ("normal", "uniform"):
            raise ValueError(f"noise_type must be 'normal' or 'uniform', got {noise_type!r}")
        noise_pct = _check_real("noise_pct", noise_pct)
        noise_std = _check_real("noise_std", noise_std)
        if not _is_int(noise_seed):
            raise TypeError(f"noise_seed must be an integer, got {noise_seed!r}")
        if noise_type == "normal" and noise_range_t is not None and not noise_pct > 0:
            raise ValueError(f"noise_pct must be positive with normal noise (timm redraws until |noise| < "
                             f"noise_pct), got {noise_pct}")
        if noise_range_t is None:
            rng = None
        elif isinstance(noise_range_t, (list, tuple)):
            if len(noise_range_t) != 2 or not all(_is_int(v) for v in noise_range_t):
                raise ValueError(f"noise_range_t must be an integer or a [start, end) pair of integers, "
                                 f"got {noise_range_t!r}")
            rng = (int(noise_range_t[0]), int(noise_range_t[1]))
        elif _is_int(noise_range_t):
            if noise_horizon_t is None:
                raise ValueError("noise_range_t without an end (noise for every t >= start) needs "
                                 "noise_horizon_t: lrfused tabulates timm's noise up to that t")
            rng = (int(noise_range_t), _check_nonneg_int("noise_horizon_t", noise_horizon_t))
        else:
            raise ValueError(f"noise_range_t must be an integer or a [start, end) pair of integers, got {noise_range_t!r}")
        if noise_horizon_t is not None and not _is_int(noise_range_t):
            raise ValueError("noise_horizon_t applies only to a noise_range_t without an end")
        if isinstance(noise_range_t, list):
            noise_range_t = tuple(noise_range_t)  # immutable and hashable, as every schedule
        self._set(warmup_t=warmup_t, warmup_lr_init=warmup_lr_init, warmup_prefix=bool(warmup_prefix),
                  t_in_epochs=t_in_epochs, steps_per_epoch=steps_per_epoch, noise_range_t=noise_range_t,
                  noise_type=noise_type, noise_pct=noise_pct, noise_std=noise_std, noise_seed=int(noise_seed),
                  noise_horizon_t=noise_horizon_t, _noise_range=rng)

    def __repr__(self):
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields + self._common)
        return f"timm.{type(self).__name__}({args})"

    @property
    def _multiplicative(self):
        return False

    def _stack_need(self):
        return 2 if self._noise_range is not None else 1

    def _cycle_fields(self) -> dict:
        """The TIMM node's fields this scheduler sets (checked by its constructor into ``_cycles``)."""
        return self._cycles

    def _leaf(self) -> list:
        """timm's _get_lr(t) as one node."""
        fields = dict(shape=_SHAPES[self._shape], t_initial=1.0, lr_min=0.0, cycle_mul=1.0, cycle_decay=1.0,
                      cycle_limit=1.0, k_decay=1.0, lb=0.0, ub=0.0, power=1.0, decay_t=1.0, decay_rate=1.0,
                      warmup_t=self.warmup_t, warmup_lr_init=self.warmup_lr_init,
                      warmup_prefix=1.0 if self.warmup_prefix else 0.0, count=0)
        fields.update(self._cycle_fields())
        tail = self._milestones()
        fields["count"] = len(tail)
        return contract.node("TIMM", fields, tail=tail)

    def _pack_node(self, g, n):
        node = self._leaf()  # then timm's _add_noise, then the epoch of the step
        if self._noise_range is not None:
            start, end = self._noise_range
            start = max(start, 1)  # t = 0 is the constructor's value: timm adds no noise to it
            noise = [_timm_noise(t, self.noise_type, self.noise_pct, self.noise_std, self.noise_seed)
                     for t in range(start, max(start, end))]
            node = contract.node("NOISE", {"start": start, "count": len(noise)}, tail=noise, children=[node])
        if self.t_in_epochs:
            node = contract.node("PER_EPOCH", {"steps_per_epoch": self.steps_per_epoch}, children=[node])
        return node

    def _milestones(self) -> tuple:
        return ()


def _check_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay=1.0):
    if not _is_real(t_initial) or not t_initial > 0:
        raise ValueError(f"t_initial must be positive, got {t_initial!r}")  # timm: assert t_initial > 0
    lr_min = _check_real("lr_min", lr_min)
    if lr_min < 0:
        raise ValueError(f"lr_min must be >= 0, got {lr_min}")
    cycle_mul = _check_real("cycle_mul", cycle_mul)
    if cycle_mul <= 0:
        raise ValueError(f"cycle_mul must be positive (timm takes its logarithm), got {cycle_mul}")
    if not _is_real(cycle_limit) or cycle_limit < 0:
        raise ValueError(f"cycle_limit must be >= 0, got {cycle_limit!r}")
    return dict(t_initial=float(t_initial), lr_min=lr_min, cycle_mul=cycle_mul,
                cycle_decay=_check_real("cycle_decay", cycle_decay), cycle_limit=float(cycle_limit),
                k_decay=_check_real("k_decay", k_decay))


class CosineLRScheduler(_TimmScheduler):
    """timm.scheduler.CosineLRScheduler: cosine cycles (cycle_mul, cycle_decay, cycle_limit, k_decay)."""

    _shape = "COSINE"
    _fields = ("t_initial", "lr_min", "cycle_mul", "cycle_decay", "cycle_limit", "warmup_t", "warmup_lr_init",
               "warmup_prefix", "k_decay")

    def __init__(self, t_initial: int, lr_min: float = 0., cycle_mul: float = 1., cycle_decay: float = 1.,
                 cycle_limit: int = 1, warmup_t: int = 0, warmup_lr_init: float = 0., warmup_prefix: bool = False,
                 t_in_epochs: bool = True, noise_range_t=None, noise_pct: float = 0.67, noise_std: float = 1.0,
                 noise_seed: int = 42, k_decay: float = 1.0, *, noise_type: str = "normal", steps_per_epoch=None,
                 noise_horizon_t=None):
        cycles = _check_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay)
        self._set(t_initial=t_initial, lr_min=lr_min, cycle_mul=cycle_mul, cycle_decay=cycle_decay,
                  cycle_limit=cycle_limit, k_decay=k_decay, _cycles=cycles)
        self._init_common(warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs, steps_per_epoch, noise_range_t,
                          noise_type, noise_pct, noise_std, noise_seed, noise_horizon_t)


class PolyLRScheduler(_TimmScheduler):
    """timm.scheduler.PolyLRScheduler: (1 - t^k / t_i^k)^power cycles."""

    _shape = "POLY"
    _fields = ("t_initial", "power", "lr_min", "cycle_mul", "cycle_decay", "cycle_limit", "warmup_t",
               "warmup_lr_init", "warmup_prefix", "k_decay")

    def __init__(self, t_initial: int, power: float = 0.5, lr_min: float = 0., cycle_mul: float = 1.,
                 cycle_decay: float = 1., cycle_limit: int = 1, warmup_t: int = 0, warmup_lr_init: float = 0.,
                 warmup_prefix: bool = False, t_in_epochs: bool = True, noise_range_t=None, noise_pct: float = 0.67,
                 noise_std: float = 1.0, noise_seed: int = 42, k_decay: float = 1.0, *, noise_type: str = "normal",
                 steps_per_epoch=None, noise_horizon_t=None):
        cycles = _check_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, k_decay)
        cycles["power"] = _check_real("power", power)
        self._set(t_initial=t_initial, power=power, lr_min=lr_min, cycle_mul=cycle_mul, cycle_decay=cycle_decay,
                  cycle_limit=cycle_limit, k_decay=k_decay, _cycles=cycles)
        self._init_common(warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs, steps_per_epoch, noise_range_t,
                          noise_type, noise_pct, noise_std, noise_seed, noise_horizon_t)


class TanhLRScheduler(_TimmScheduler):
    """timm.scheduler.TanhLRScheduler: 1 - tanh(lb (1 - t/t_i) + ub t/t_i) cycles."""

    _shape = "TANH"
    _fields = ("t_initial", "lb", "ub", "lr_min", "cycle_mul", "cycle_decay", "cycle_limit", "warmup_t",
               "warmup_lr_init", "warmup_prefix")

    def __init__(self, t_initial: int, lb: float = -7., ub: float = 3., lr_min: float = 0., cycle_mul: float = 1.,
                 cycle_decay: float = 1., cycle_limit: int = 1, warmup_t: int = 0, warmup_lr_init: float = 0.,
                 warmup_prefix: bool = False, t_in_epochs: bool = True, noise_range_t=None, noise_pct: float = 0.67,
                 noise_std: float = 1.0, noise_seed: int = 42, *, noise_type: str = "normal", steps_per_epoch=None,
                 noise_horizon_t=None):
        cycles = _check_cycles(t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit)
        cycles["lb"], cycles["ub"] = _check_real("lb", lb), _check_real("ub", ub)
        if not lb < ub:
            raise ValueError(f"lb must be smaller than ub, got lb={lb}, ub={ub}")  # timm: assert lb < ub
        if _is_real(warmup_lr_init) and warmup_lr_init < 0:
            raise ValueError(f"warmup_lr_init must be >= 0, got {warmup_lr_init}")
        self._set(t_initial=t_initial, lb=lb, ub=ub, lr_min=lr_min, cycle_mul=cycle_mul, cycle_decay=cycle_decay,
                  cycle_limit=cycle_limit, _cycles=cycles)
        self._init_common(warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs, steps_per_epoch, noise_range_t,
                          noise_type, noise_pct, noise_std, noise_seed, noise_horizon_t)


class StepLRScheduler(_TimmScheduler):
    """timm.scheduler.StepLRScheduler: base * decay_rate ** (t // decay_t)."""

    _shape = "STEP"
    _fields = ("decay_t", "decay_rate", "warmup_t", "warmup_lr_init", "warmup_prefix")

    def __init__(self, decay_t: float, decay_rate: float = 1., warmup_t: int = 0, warmup_lr_init: float = 0.,
                 warmup_prefix: bool = True, t_in_epochs: bool = True, noise_range_t=None, noise_pct: float = 0.67,
                 noise_std: float = 1.0, noise_seed: int = 42, *, noise_type: str = "normal", steps_per_epoch=None,
                 noise_horizon_t=None):
        d = _check_real("decay_t", decay_t)
        if d == 0:
            raise ZeroDivisionError("decay_t must not be 0 (timm divides t by it)")
        self._set(decay_t=decay_t, decay_rate=decay_rate,
                  _cycles=dict(decay_t=d, decay_rate=_check_real("decay_rate", decay_rate)))
        self._init_common(warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs, steps_per_epoch, noise_range_t,
                          noise_type, noise_pct, noise_std, noise_seed, noise_horizon_t)


class MultiStepLRScheduler(_TimmScheduler):
    """timm.scheduler.MultiStepLRScheduler: base * decay_rate ** bisect_right(decay_t, t + 1) (timm's t + 1:
    the decay applies one t before each milestone)."""

    _shape = "MULTI_STEP"
    _fields = ("decay_t", "decay_rate", "warmup_t", "warmup_lr_init", "warmup_prefix")

    def __init__(self, decay_t, decay_rate: float = 1., warmup_t: int = 0, warmup_lr_init: float = 0.,
                 warmup_prefix: bool = True, t_in_epochs: bool = True, noise_range_t=None, noise_pct: float = 0.67,
                 noise_std: float = 1.0, noise_seed: int = 42, *, noise_type: str = "normal", steps_per_epoch=None,
                 noise_horizon_t=None):
        if isinstance(decay_t, (str, bytes)) or not isinstance(decay_t, (list, tuple)):
            raise TypeError(f"decay_t must be a list of milestones, got {decay_t!r}")
        milestones = tuple(_check_real(f"decay_t[{i}]", m) for i, m in enumerate(decay_t))
        self._set(decay_t=tuple(decay_t), decay_rate=decay_rate, _tail=milestones,
                  _cycles=dict(decay_rate=_check_real("decay_rate", decay_rate)))
        self._init_common(warmup_t, warmup_lr_init, warmup_prefix, t_in_epochs, steps_per_epoch, noise_range_t,
                          noise_type, noise_pct, noise_std, noise_seed, noise_horizon_t)

    def _milestones(self):
        return self._tail


_WSD_STABLES = contract.ENUMS["timm_wsd_stable"]
_WSD_DECAYS = contract.ENUMS["timm_wsd_decay"]
_WSD_STABLE_NAMES = {"constant": "CONSTANT", "rsqrt": "RSQRT", "power": "POWER"}
_WSD_DECAY_NAMES = {"linear": "LINEAR", "1-sqrt": "ONE_MINUS_SQRT", "cosine": "COSINE", "power": "POWER", "exp": "EXP"}


class WSDLRScheduler(_TimmScheduler):
    """timm.scheduler.WSDLRScheduler: warmup, a stable phase (constant, or (1 + t_s/timescale)^-power), then
    the last ``decay_t`` of ``t_initial`` decaying to lr_min by ``decay_fn``. A callable ``decay_fn`` is
    tabulated at t_decay / decay_t for t_decay = 1 .. decay_t, every value it can be called with (integer
    t_initial and decay_t)."""

    _fields = ("t_initial", "decay_t", "lr_min", "stable_fn", "stable_timescale", "stable_power", "decay_fn",
               "decay_power", "decay_ratio", "warmup_t", "warmup_lr_init")

    def __init__(self, t_initial: int, decay_t: int, lr_min: float = 0., stable_fn: str = "constant",
                 stable_timescale=None, stable_power: float = 0.5, decay_fn="1-sqrt", decay_power: float = 0.5,
                 decay_ratio: float = 0.1, warmup_t: int = 0, warmup_lr_init: float = 0., t_in_epochs: bool = True,
                 noise_range_t=None, noise_pct: float = 0.67, noise_std: float = 1.0, noise_seed: int = 42, *,
                 noise_type: str = "normal", steps_per_epoch=None, noise_horizon_t=None):
        # timm's checks and messages, in timm's order
        if not _is_real(t_initial) or t_initial <= 0:
            raise ValueError(f"Invalid t_initial ({t_initial}), must be > 0.")
        if not _is_real(decay_t) or not 0 < decay_t <= t_initial:
            raise ValueError(f"Invalid decay_t ({decay_t}), must be in (0, t_initial] w/ t_initial={t_initial}.")
        lr_min = _check_real("lr_min", lr_min)
        if lr_min < 0:
            raise ValueError(f"Invalid lr_min ({lr_min}), must be >= 0.")
        if stable_fn not in _WSD_STABLE_NAMES:
            raise ValueError(f"Invalid stable_fn ({stable_fn}), must be one of {tuple(_WSD_STABLE_NAMES)}.")
        if isinstance(decay_fn, str) and decay_fn not in _WSD_DECAY_NAMES:
            raise ValueError(f"Invalid decay_fn ({decay_fn}), must be one of {tuple(_WSD_DECAY_NAMES)} or a callable.")
        if not isinstance(decay_fn, str) and not callable(decay_fn):
            raise TypeError(f"decay_fn must be one of {tuple(_WSD_DECAY_NAMES)} or a callable, got {decay_fn!r}")
        decay_ratio, decay_power = _check_real("decay_ratio", decay_ratio), _check_real("decay_power", decay_power)
        stable_power = _check_real("stable_power", stable_power)
        if not 0. < decay_ratio < 1.:
            raise ValueError(f"Invalid decay_ratio ({decay_ratio}), must be in (0, 1).")
        if decay_power <= 0:
            raise ValueError(f"Invalid decay_power ({decay_power}), must be > 0.")
        if stable_power <= 0:
            raise ValueError(f"Invalid stable_power ({stable_power}), must be > 0.")
        if stable_fn != "constant":
            if stable_timescale is None:
                stable_timescale = warmup_t
            if not _is_real(stable_timescale) or stable_timescale <= 0:
                raise ValueError(
                    f"stable_fn={stable_fn} requires a positive stable_timescale, it defaults to warmup_t "
                    f"({warmup_t}), set it explicitly when there is no warmup.")
        table = ()
        if callable(decay_fn):
            if not (_is_int(t_initial) and _is_int(decay_t)):
                raise ValueError("a callable decay_fn needs integer t_initial and decay_t (lrfused tabulates it at "
                                 "t_decay / decay_t, t_decay = 1 .. decay_t)")
            table = _tabulate("decay_fn", decay_fn, [i / decay_t for i in range(1, int(decay_t) + 1)])
        # a callable is kept as its table (what the kernels read; picklable, compared by value, as LambdaLR)
        self._set(t_initial=t_initial, decay_t=decay_t, lr_min=lr_min, stable_fn=stable_fn,
                  stable_timescale=stable_timescale, stable_power=stable_power,
                  decay_fn=table if callable(decay_fn) else decay_fn, decay_power=decay_power,
                  decay_ratio=decay_ratio)
        self._init_common(warmup_t, warmup_lr_init, False, t_in_epochs, steps_per_epoch, noise_range_t,
                          noise_type, noise_pct, noise_std, noise_seed, noise_horizon_t)

    def _leaf(self):
        table = self.decay_fn if isinstance(self.decay_fn, tuple) else ()
        decay = _WSD_DECAYS["TABLE"] if table else _WSD_DECAYS[_WSD_DECAY_NAMES[self.decay_fn]]
        return contract.node("TIMM_WSD", dict(
            t_initial=self.t_initial, decay_t=self.decay_t, lr_min=self.lr_min,
            stable_fn=_WSD_STABLES[_WSD_STABLE_NAMES[self.stable_fn]],
            stable_timescale=1.0 if self.stable_timescale is None else self.stable_timescale,
            stable_power=self.stable_power, decay_fn=decay, decay_power=self.decay_power,
            decay_ratio=self.decay_ratio, warmup_t=self.warmup_t, warmup_lr_init=self.warmup_lr_init,
            count=len(table)), tail=table)


TIMM_SCHEDULERS = {c.__name__: c for c in (CosineLRScheduler, TanhLRScheduler, PolyLRScheduler, StepLRScheduler,
                                           MultiStepLRScheduler, WSDLRScheduler)}


def from_timm(scheduler, steps_per_epoch: int | None = None, noise_horizon_t: int | None = None) -> Schedule:
    """The lrfused schedule equivalent to a constructed ``timm.scheduler`` object (Cosine, Tanh, Poly, Step,
    MultiStep). Reads its configuration, not its position (the schedule starts at t = 0). The group lrs it
    scales are the lrfused optimizer's own, which the timm scheduler read as ``base_values``.

    ``steps_per_epoch`` is required when the scheduler counts epochs (``t_in_epochs=True``);
    ``noise_horizon_t`` when its ``noise_range_t`` has no end."""
    name = type(scheduler).__name__
    cls = TIMM_SCHEDULERS.get(name)
    if cls is None or not type(scheduler).__module__.startswith("timm."):
        if name == "PlateauLRScheduler":
            raise ValueError("from_timm: PlateauLRScheduler is not supported yet (its metric-driven state with a "
                             "warmup and noise has no lrfused form); use lrfused.schedules.ReduceLROnPlateau")
        raise TypeError(f"from_timm expects one of timm's {', '.join(TIMM_SCHEDULERS)}, got {name}")
    groups = getattr(scheduler, "optimizer").param_groups
    if any("lr_scale" in g for g in groups):
        raise ValueError("from_timm: param groups with timm's 'lr_scale' are not supported; fold the scale into "
                         "the group's lr")
    s = scheduler
    common = dict(t_in_epochs=s.t_in_epochs, noise_range_t=s.noise_range_t, noise_pct=s.noise_pct,
                  noise_std=s.noise_std, noise_seed=s.noise_seed, noise_type=s.noise_type,
                  steps_per_epoch=steps_per_epoch if s.t_in_epochs else None,
                  noise_horizon_t=noise_horizon_t if _is_int(s.noise_range_t) else None)
    if s.t_in_epochs and steps_per_epoch is None:
        raise ValueError(f"from_timm: the {name} counts epochs (t_in_epochs=True): pass steps_per_epoch")
    warm = dict(warmup_t=s.warmup_t, warmup_lr_init=s.warmup_lr_init, warmup_prefix=getattr(s, "warmup_prefix", False))
    if cls is WSDLRScheduler:
        return cls(s.t_initial, s.decay_t, s.lr_min, s.stable_fn, s.stable_timescale, s.stable_power, s.decay_fn,
                   s.decay_power, s.decay_ratio, s.warmup_t, s.warmup_lr_init, **common)
    if cls in (StepLRScheduler, MultiStepLRScheduler):
        return cls(list(s.decay_t) if cls is MultiStepLRScheduler else s.decay_t, s.decay_rate, **warm, **common)
    cyc = dict(t_initial=s.t_initial, lr_min=s.lr_min, cycle_mul=s.cycle_mul, cycle_decay=s.cycle_decay,
               cycle_limit=s.cycle_limit)
    if cls is TanhLRScheduler:
        return cls(lb=s.lb, ub=s.ub, **cyc, **warm, **common)
    if cls is PolyLRScheduler:
        return cls(power=s.power, k_decay=s.k_decay, **cyc, **warm, **common)
    return cls(k_decay=s.k_decay, **cyc, **warm, **common)
