"""Shared machinery for the optimizer tests: lrfused vs torch.optim + torch.optim.lr_scheduler, live.

Every comparison runs torch's single-tensor optimizer (``foreach=False``) and the equivalent torch
scheduler in the loop ``opt.step(); sched.step()`` next to the lrfused optimizer built from the same
initial values, feeds both the same gradients, and compares every parameter and every state tensor
after every step.

Tolerances: ``lrfused.testing`` (``TOLERANCE``, ``assert_close``), the one table of the tests and the
benchmarks, with the measurements that justify it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch.optim import lr_scheduler as L

import lrfused
from lrfused import schedules as S
from lrfused.testing import LR_ATOL_PER_BASE, LR_RTOL, assert_close

LOW_PRECISION = (torch.bfloat16, torch.float16)

STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step")

OPTIMIZERS = {
    "SGD": (lrfused.SGD, torch.optim.SGD),
    "Adam": (lrfused.Adam, torch.optim.Adam),
    "AdamW": (lrfused.AdamW, torch.optim.AdamW),
}

# Option sets per optimizer (the constructor's keyword arguments, lr excluded).
OPTIONS = {
    "SGD": [
        {},
        {"momentum": 0.9},
        {"momentum": 0.9, "dampening": 0.3},
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.05},
        {"momentum": 0.99, "weight_decay": 0.01, "maximize": True},
        {"weight_decay": 0.1, "maximize": True},
    ],
    "Adam": [
        {},
        {"betas": (0.8, 0.99), "eps": 1e-6},
        {"weight_decay": 0.05, "amsgrad": True},
        {"betas": (0.0, 0.9), "maximize": True},
        {"amsgrad": True, "maximize": True, "eps": 1e-3, "weight_decay": 0.01},
    ],
    "AdamW": [
        {},
        {"betas": (0.5, 0.9), "weight_decay": 0.1},
        {"weight_decay": 0.0, "amsgrad": True},
        {"amsgrad": True, "maximize": True, "weight_decay": 0.2, "eps": 1e-4},
        {"betas": (0.9, 0.0), "weight_decay": 0.01},
    ],
}


def option_id(opts: dict) -> str:
    if not opts:
        return "default"
    return ",".join(f"{k}={v}" for k, v in sorted(opts.items()))


# ------------------------------------------------------------------------------------------------
# schedules: each spec builds the torch scheduler on a torch optimizer and the lrfused schedule
# ------------------------------------------------------------------------------------------------


def _lambda_fn(k):
    return 1.0 / (1.0 + 0.05 * k) if k % 17 else 0.5


def _mult_fn(k):
    return 0.97 if k % 5 else 1.02


def plateau_metric(k: int) -> float:
    """A loss curve that improves, stalls (below the threshold), improves once, then stalls again."""
    if k < 15:
        return 1.0 / (1.0 + 0.2 * k)
    if k < 45:
        return 0.25 + 1e-6 * ((k * 7) % 5)
    if k == 45:
        return 0.1
    return 0.1 + 1e-7 * (k % 3)


@dataclass
class ScheduleSpec:
    name: str
    torch_fn: Optional[Callable]  # (optimizer, num_steps) -> torch scheduler, or None for constant
    lrf_fn: Optional[Callable]  # (num_steps) -> lrfused schedule, or None for constant
    plateau: bool = False
    metric: Callable[[int], float] = plateau_metric
    cycles_momentum: bool = False
    via_from_torch: bool = False
    max_lr: float = 0.1  # the largest lr this schedule can apply (for the lr tolerance)
    tags: tuple = field(default_factory=tuple)

    def build_torch(self, opt, n):
        return None if self.torch_fn is None else self.torch_fn(opt, n)

    def build_lrf(self, n, torch_sched=None):
        if self.via_from_torch:
            return S.from_torch(torch_sched)
        return None if self.lrf_fn is None else self.lrf_fn(n)


def _seq_torch(o, n):
    return L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.01, total_iters=10), L.CosineAnnealingLR(o, T_max=n - 10)], milestones=[10]
    )


def _seq_lrf(n):
    return S.SequentialLR([S.LinearLR(start_factor=0.01, total_iters=10), S.CosineAnnealingLR(T_max=n - 10)], milestones=[10])


SCHEDULES = {
    "constant": ScheduleSpec("constant", None, None),
    "StepLR": ScheduleSpec("StepLR", lambda o, n: L.StepLR(o, step_size=7, gamma=0.5), lambda n: S.StepLR(step_size=7, gamma=0.5)),
    "MultiStepLR": ScheduleSpec(
        "MultiStepLR",
        lambda o, n: L.MultiStepLR(o, milestones=[10, 30, 30, 75], gamma=0.3),
        lambda n: S.MultiStepLR(milestones=[10, 30, 30, 75], gamma=0.3),
    ),
    "ConstantLR": ScheduleSpec(
        "ConstantLR", lambda o, n: L.ConstantLR(o, factor=0.5, total_iters=12), lambda n: S.ConstantLR(factor=0.5, total_iters=12)
    ),
    "LinearLR": ScheduleSpec(
        "LinearLR",
        lambda o, n: L.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=20),
        lambda n: S.LinearLR(start_factor=0.1, end_factor=1.0, total_iters=20),
    ),
    "ExponentialLR": ScheduleSpec("ExponentialLR", lambda o, n: L.ExponentialLR(o, gamma=0.97), lambda n: S.ExponentialLR(gamma=0.97)),
    "PolynomialLR": ScheduleSpec(
        "PolynomialLR", lambda o, n: L.PolynomialLR(o, total_iters=60, power=2.0), lambda n: S.PolynomialLR(total_iters=60, power=2.0)
    ),
    # T_max = 40 with 100+ steps: past T_max the lr rises again, as torch's does
    "CosineAnnealingLR": ScheduleSpec(
        "CosineAnnealingLR",
        lambda o, n: L.CosineAnnealingLR(o, T_max=40, eta_min=1e-3),
        lambda n: S.CosineAnnealingLR(T_max=40, eta_min=1e-3),
    ),
    "CosineAnnealingWarmRestarts": ScheduleSpec(
        "CosineAnnealingWarmRestarts",
        lambda o, n: L.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=2, eta_min=1e-4),
        lambda n: S.CosineAnnealingWarmRestarts(T_0=10, T_mult=2, eta_min=1e-4),
    ),
    "CyclicLR": ScheduleSpec(
        "CyclicLR",
        lambda o, n: L.CyclicLR(
            o, base_lr=0.01, max_lr=0.1, step_size_up=7, step_size_down=5, mode="triangular2",
            cycle_momentum=True, base_momentum=0.8, max_momentum=0.95,
        ),
        lambda n: S.CyclicLR(
            base_lr=0.01, max_lr=0.1, step_size_up=7, step_size_down=5, mode="triangular2",
            cycle_momentum=True, base_momentum=0.8, max_momentum=0.95,
        ),
        cycles_momentum=True,
    ),
    "CyclicLR-exp_range": ScheduleSpec(
        "CyclicLR-exp_range",
        lambda o, n: L.CyclicLR(
            o, base_lr=0.005, max_lr=0.08, step_size_up=6, mode="exp_range", gamma=0.98, cycle_momentum=True,
            base_momentum=0.85, max_momentum=0.9,
        ),
        lambda n: S.CyclicLR(
            base_lr=0.005, max_lr=0.08, step_size_up=6, mode="exp_range", gamma=0.98, cycle_momentum=True,
            base_momentum=0.85, max_momentum=0.9,
        ),
        cycles_momentum=True,
    ),
    "OneCycleLR": ScheduleSpec(
        "OneCycleLR",
        lambda o, n: L.OneCycleLR(o, max_lr=0.1, total_steps=n, pct_start=0.3, cycle_momentum=True,
                                  base_momentum=0.85, max_momentum=0.95),
        lambda n: S.OneCycleLR(max_lr=0.1, total_steps=n, pct_start=0.3, cycle_momentum=True,
                               base_momentum=0.85, max_momentum=0.95),
        cycles_momentum=True,
    ),
    "OneCycleLR-linear-3phase": ScheduleSpec(
        "OneCycleLR-linear-3phase",
        lambda o, n: L.OneCycleLR(o, max_lr=0.08, total_steps=n, pct_start=0.25, anneal_strategy="linear",
                                  three_phase=True, cycle_momentum=True),
        lambda n: S.OneCycleLR(max_lr=0.08, total_steps=n, pct_start=0.25, anneal_strategy="linear",
                               three_phase=True, cycle_momentum=True),
        cycles_momentum=True,
    ),
    "SequentialLR": ScheduleSpec("SequentialLR", _seq_torch, _seq_lrf),
    "ChainedScheduler": ScheduleSpec(
        "ChainedScheduler",
        lambda o, n: L.ChainedScheduler([L.StepLR(o, step_size=9, gamma=0.7), L.ExponentialLR(o, gamma=0.99)]),
        lambda n: S.ChainedScheduler([S.StepLR(step_size=9, gamma=0.7), S.ExponentialLR(gamma=0.99)]),
    ),
    "LambdaLR": ScheduleSpec("LambdaLR", lambda o, n: L.LambdaLR(o, _lambda_fn), lambda n: S.LambdaLR(_lambda_fn, total_steps=n)),
    "MultiplicativeLR": ScheduleSpec(
        "MultiplicativeLR", lambda o, n: L.MultiplicativeLR(o, _mult_fn), lambda n: S.MultiplicativeLR(_mult_fn, total_steps=n)
    ),
    "ReduceLROnPlateau": ScheduleSpec(
        "ReduceLROnPlateau",
        lambda o, n: L.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=1e-3, cooldown=1, min_lr=1e-3),
        lambda n: S.ReduceLROnPlateau(mode="min", factor=0.5, patience=2, threshold=1e-3, cooldown=1, min_lr=1e-3),
        plateau=True,
    ),
    "ReduceLROnPlateau-max-abs": ScheduleSpec(
        "ReduceLROnPlateau-max-abs",
        lambda o, n: L.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=1, threshold=1e-2, threshold_mode="abs"),
        lambda n: S.ReduceLROnPlateau(mode="max", factor=0.3, patience=1, threshold=1e-2, threshold_mode="abs"),
        plateau=True,
        metric=lambda k: -plateau_metric(k),
    ),
}

# The same policies, but the lrfused schedule comes from S.from_torch(the live torch scheduler).
FROM_TORCH = {
    f"from_torch-{name}": ScheduleSpec(
        f"from_torch-{name}", SCHEDULES[name].torch_fn, None, plateau=SCHEDULES[name].plateau,
        metric=SCHEDULES[name].metric, cycles_momentum=SCHEDULES[name].cycles_momentum, via_from_torch=True,
    )
    for name in ("CosineAnnealingLR", "CyclicLR", "OneCycleLR", "SequentialLR", "ReduceLROnPlateau", "StepLR")
}

ALL_SCHEDULES = {**SCHEDULES, **FROM_TORCH}


# ------------------------------------------------------------------------------------------------
# parameters, gradients, comparisons
# ------------------------------------------------------------------------------------------------


def make_values(shapes, dtype, gen):
    """Initial parameter values ~ N(0, 1), drawn in float64 then rounded to ``dtype``."""
    return [torch.randn(s, dtype=torch.float64, generator=gen).to(dtype) for s in shapes]


def leaf_pair(values):
    """Two independent sets of leaf parameters with identical values (lrfused's, torch's)."""
    a = [v.clone().requires_grad_(True) for v in values]
    b = [v.clone().requires_grad_(True) for v in values]
    return a, b


def draw_grads(params, gen, dtype):
    """Gradients ~ N(0, 1); for the 16-bit dtypes |g| in [0.25, 4] so that (1 - beta2) g^2 stays a
    normal number in float16 (torch's single-tensor path would otherwise divide by an eps that
    float16 cannot represent, and produce infs that a fp32-compute kernel does not)."""
    out = []
    for p in params:
        if dtype in LOW_PRECISION:
            mag = torch.rand(p.shape, dtype=torch.float64, generator=gen) * 3.75 + 0.25
            sign = torch.randint(0, 2, p.shape, generator=gen).to(torch.float64) * 2 - 1
            out.append((mag * sign).to(dtype))
        else:
            out.append(torch.randn(p.shape, dtype=torch.float64, generator=gen).to(dtype))
    return out


def set_grads(params_a, params_b, grads):
    for a, b, g in zip(params_a, params_b, grads):
        a.grad = g.clone()
        b.grad = g.clone()


def lrf_state(opt, p) -> dict:
    """The per-parameter state of an lrfused optimizer, with torch's keys (API.md)."""
    return opt.state[p]


def tensor_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def compare_states(lrf_opt, torch_opt, lrf_params, torch_params, dtype, what, allowed_extra=(), befores=None):
    """Every parameter and every state tensor of torch has an lrfused counterpart within tolerance;
    ``step`` is compared exactly (value, dtype float32, 0-dim).  The tolerance is the one of each
    parameter's own dtype (``dtype`` only labels the messages)."""
    assert len(lrf_params) == len(torch_params)
    for i, (pa, pb) in enumerate(zip(lrf_params, torch_params)):
        dtype = pb.dtype
        before = befores[i] if befores is not None else {}
        assert_close(pa, pb, key="param", dtype=dtype, before=before.get("param"), what=f"{what} param {i}")
        sa = tensor_state(lrf_state(lrf_opt, pa))
        sb = tensor_state(torch_opt.state[pb])
        missing = set(sb) - set(sa)
        assert not missing, f"{what} param {i}: lrfused state lacks {sorted(missing)} (has {sorted(sa)})"
        extra = set(sa) - set(sb) - set(allowed_extra)
        assert not extra, f"{what} param {i}: lrfused state has keys torch does not: {sorted(extra)}"
        for key, eb in sb.items():
            if key in allowed_extra:
                # torch keeps a key it does not use (e.g. SGD's "step" loaded from an lrfused checkpoint)
                # as it was loaded; lrfused maintains it
                continue
            ea = sa[key]
            if key == "step":
                assert ea.dtype == eb.dtype and ea.shape == eb.shape, f"{what} param {i}: step {ea!r} vs torch {eb!r}"
                assert torch.equal(ea.cpu(), eb.cpu()), f"{what} param {i}: step {ea.item()} vs torch {eb.item()}"
            else:
                assert ea.shape == eb.shape and ea.dtype == eb.dtype, (
                    f"{what} param {i}: {key} shape/dtype {tuple(ea.shape)}/{ea.dtype} vs torch {tuple(eb.shape)}/{eb.dtype}"
                )
                assert_close(ea, eb, key=key, dtype=dtype, before=before.get(key), what=f"{what} param {i}")


def assert_lr_close(lrf_lrs, torch_lrs, max_lr, what):
    assert isinstance(lrf_lrs, list) and len(lrf_lrs) == len(torch_lrs), f"{what}: get_last_lr() = {lrf_lrs!r}"
    for g, (a, e) in enumerate(zip(lrf_lrs, torch_lrs)):
        assert isinstance(a, float), f"{what}: get_last_lr()[{g}] is {type(a).__name__}, not float"
        bound = LR_RTOL * abs(e) + LR_ATOL_PER_BASE * max_lr
        assert abs(a - e) <= bound, f"{what}: group {g} lr {a!r} vs torch applied {e!r} (|diff| {abs(a - e):.3g} > {bound:.3g})"


def extra_state_keys(opt_name):
    """State keys an lrfused optimizer may keep beyond torch's: SGD needs a step counter for the
    schedule where torch's SGD keeps none."""
    return ("step",) if opt_name == "SGD" else ()


def snapshot(params, opt, state_fn):
    """Copies of each parameter and its tensor state (for 'untouched' and tolerance-scale checks)."""
    out = []
    for p in params:
        d = {"param": p.detach().clone()}
        for k, v in tensor_state(state_fn(opt, p)).items():
            d[k] = v.detach().clone()
        out.append(d)
    return out


def assert_bitwise_equal_snapshot(params, opt, snap, state_fn, what):
    for i, (p, s) in enumerate(zip(params, snap)):
        assert torch.equal(p.detach(), s["param"]) and p.dtype == s["param"].dtype, f"{what}: param {i} changed"
        st = tensor_state(state_fn(opt, p))
        assert set(st) == set(s) - {"param"}, f"{what}: param {i} state keys changed {sorted(s)} -> {sorted(st)}"
        for k, v in st.items():
            assert torch.equal(v, s[k]), f"{what}: param {i} state {k} changed"


def torch_state_fn(opt, p):
    return opt.state[p]


def resync_torch_from_lrfused(lrf_opt, torch_opt, lrf_params, torch_params):
    """Make torch's params and state bit-identical to lrfused's (low-precision runs: each compared step
    is then one update from identical inputs, and rounding differences cannot compound)."""
    with torch.no_grad():
        for pa, pb in zip(lrf_params, torch_params):
            pb.copy_(pa)
            sa = tensor_state(lrf_state(lrf_opt, pa))
            sb = torch_opt.state[pb]
            for key, v in list(sb.items()):
                if isinstance(v, torch.Tensor):
                    assert key in sa, f"lrfused state lacks {key}"
                    v.copy_(sa[key])


# ------------------------------------------------------------------------------------------------
# the parity driver
# ------------------------------------------------------------------------------------------------


def run_parity(
    opt_name: str,
    options: dict,
    spec: ScheduleSpec,
    dtype=torch.float64,
    steps: int = 100,
    shapes=((300,), (17, 5), (1,)),
    lr: float = 0.05,
    seed: int = 0,
    resync: Optional[bool] = None,
    metric_as_tensor: bool = False,
    device: str = "cpu",
):
    """lrfused.<opt_name> vs torch.optim.<opt_name>(foreach=False) + the torch scheduler of ``spec``,
    comparing parameters, state and get_last_lr() after every step."""
    if resync is None:
        resync = dtype in LOW_PRECISION
    lrf_cls, torch_cls = OPTIMIZERS[opt_name]
    gen = torch.Generator().manual_seed(seed)
    values = [v.to(device) for v in make_values(shapes, dtype, gen)]
    pa, pb = leaf_pair(values)
    topt = torch_cls(pb, lr=lr, foreach=False, **options)
    tsched = spec.build_torch(topt, steps)
    schedule = spec.build_lrf(steps, tsched)
    lopt = lrf_cls(pa, lr=lr, schedule=schedule, **options)
    extra = extra_state_keys(opt_name)
    for k in range(steps):
        grads = [g.to(device) for g in draw_grads(pa, gen, dtype)]
        set_grads(pa, pb, grads)
        if resync and k > 0:
            resync_torch_from_lrfused(lopt, topt, pa, pb)
        befores = snapshot(pb, topt, torch_state_fn) if resync else None
        applied = [g["lr"] for g in topt.param_groups]
        topt.step()
        lopt.step()
        if tsched is not None:
            if spec.plateau:
                m = spec.metric(k)
                tsched.step(m)
                lopt.report(torch.tensor(m, dtype=torch.float64, device=device) if metric_as_tensor else m)
            else:
                tsched.step()
        what = f"{opt_name}({option_id(options)}) {spec.name} {dtype} {device} step {k}"
        compare_states(lopt, topt, pa, pb, dtype, what, allowed_extra=extra, befores=befores)
        assert_lr_close(lopt.get_last_lr(), applied, max(spec.max_lr, lr), what)
    return lopt, topt, pa, pb


def step_on_path(opt, op_path: bool) -> None:
    """opt.step() through the launch plan, or through the registered ops (the path torch.compile traces)."""
    if op_path:
        with lrfused.optim.eager_op_path():
            opt.step()
    else:
        opt.step()
