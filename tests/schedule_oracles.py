"""Other libraries' schedulers running live, as oracles: what each one leaves in the optimizer at every step
of its usual training loop, and the checks that compare lrfused against those recordings."""
from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import os
import pickle
import sys
import types

import pytest
import torch

import lrfused
from lrfused.testing import LR_ATOL_PER_BASE, LR_RTOL, TOLERANCE


@functools.lru_cache(maxsize=None)
def timm_module(name: str):
    """A module of timm (``timm.scheduler``, ``timm.optim.adamw``). Those need torch alone, but timm's package
    ``__init__`` files import torchvision, whose wheels pin a torch other than the CPU build the tests run on;
    so where the full import fails, ``timm`` and the packages on the way are loaded as bare namespaces and
    only the modules asked for (timm's own, unchanged source) are imported."""
    spec = importlib.util.find_spec("timm") if "timm" not in sys.modules else sys.modules["timm"].__spec__
    if spec is None:
        pytest.skip("timm is not installed (make venv installs it)")
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - torchvision missing or mismatched
        parts = name.split(".")
        root = list(spec.submodule_search_locations)[0]
        for i in range(1, len(parts)):  # timm, timm.optim, ...: namespaces without their __init__
            package = ".".join(parts[:i])
            if package in _TIMM_STUBS:
                continue
            sys.modules.pop(package, None)
            pkg = types.ModuleType(package)
            pkg.__path__ = [os.path.join(root, *parts[1:i])]
            pkg.__spec__ = importlib.machinery.ModuleSpec(package, None, is_package=True)
            pkg.__spec__.submodule_search_locations = pkg.__path__
            sys.modules[package] = pkg
            _TIMM_STUBS.add(package)
        return importlib.import_module(name)


_TIMM_STUBS: set = set()


def timm_scheduler():
    """``timm.scheduler`` (see timm_module)."""
    return timm_module("timm.scheduler")


def deepspeed_lr_schedules():
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (make venv installs it)")
    import logging

    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)
    return importlib.import_module("deepspeed.runtime.lr_schedules")


def torch_optimizer(group_lrs, kind="sgd"):
    """A torch optimizer with one small parameter per group, for a scheduler to drive."""
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in group_lrs]
    if kind == "adam":
        return torch.optim.Adam(groups, betas=(0.9, 0.999))
    return torch.optim.SGD(groups, momentum=0.9)


def record(opt, n: int, after_step, momentum_key=None):
    """lrs (and momenta) per group that steps 0 .. n-1 apply: read before each step, then ``after_step(k)``
    (the library's scheduler call after optimizer step k)."""
    lrs, moms = [], []
    for k in range(n):
        lrs.append([float(g["lr"]) for g in opt.param_groups])
        if momentum_key == "betas":
            moms.append([float(g["betas"][0]) for g in opt.param_groups])
        elif momentum_key:
            moms.append([float(g[momentum_key]) for g in opt.param_groups])
        after_step(k)
    return lrs, moms


def assert_schedule_lrs(schedule, expected, group_lrs, what="", momenta=None, fallback=0.0):
    """``schedule.lrs`` for each group equals the recorded lrs (lrfused.testing's lr tolerance)."""
    n = len(expected)
    scale = max(abs(v) for row in expected for v in row) or 1.0
    for g, b in enumerate(group_lrs):
        got = schedule.lrs(n, b, group=g).tolist()
        want = [row[g] for row in expected]
        for k, (x, y) in enumerate(zip(got, want)):
            assert abs(x - y) <= LR_RTOL * abs(y) + LR_ATOL_PER_BASE * scale, \
                f"{what} group {g} step {k}: lrfused {x!r}, original {y!r}"
        if momenta is not None:
            got_m = schedule.momenta(n, fallback, group=g).tolist()
            want_m = [row[g] for row in momenta]
            assert got_m == pytest.approx(want_m, rel=LR_RTOL, abs=LR_RTOL), f"{what} group {g}: momenta"


def run_against_recorded(opt_cls, schedule, lrs, group_lrs, momenta=None, steps=None, **kw):
    """lrfused ``opt_cls(schedule=...)`` against torch's namesake whose lrs (and beta1 / momentum) are set
    from the original library's recording before every step: the same parameters, fp64."""
    steps = steps or len(lrs)
    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(7, 3, generator=gen, dtype=torch.float64) for _ in group_lrs]
    a = [torch.nn.Parameter(v.clone()) for v in values]
    b = [torch.nn.Parameter(v.clone()) for v in values]
    lrf = opt_cls([{"params": [p], "lr": lr} for p, lr in zip(a, group_lrs)], schedule=schedule, **kw)
    ref = getattr(torch.optim, opt_cls.__name__)([{"params": [p], "lr": lr} for p, lr in zip(b, group_lrs)],
                                                 foreach=False, **kw)
    for k in range(steps):
        for g, group in enumerate(ref.param_groups):
            group["lr"] = lrs[k][g]
            if momenta is not None:
                if "betas" in group:
                    group["betas"] = (momenta[k][g], group["betas"][1])
                else:
                    group["momentum"] = momenta[k][g]
        for p, q in zip(a, b):
            grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.grad, q.grad = grad.clone(), grad.clone()
        lrf.step()
        ref.step()
    tol = TOLERANCE[torch.float64]
    for p, q in zip(a, b):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=tol, atol=tol)


def assert_resume_is_exact(opt_cls, schedule, group_lrs, steps=30, **kw):
    """A run saved at steps // 2 (optimizer state_dict and a pickled schedule) and resumed in a fresh optimizer
    ends with the same bits as the uninterrupted run."""
    def grads(k, params):
        gen = torch.Generator().manual_seed(1000 + k)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen, dtype=p.dtype)

    def fresh(sched):
        gen = torch.Generator().manual_seed(5)
        params = [torch.nn.Parameter(torch.randn(4, 5, generator=gen, dtype=torch.float32)) for _ in group_lrs]
        opt = opt_cls([{"params": [p], "lr": lr} for p, lr in zip(params, group_lrs)], schedule=sched, **kw)
        return params, opt

    full_params, full = fresh(schedule)
    for k in range(steps):
        grads(k, full_params)
        full.step()
    half_params, half = fresh(schedule)
    for k in range(steps // 2):
        grads(k, half_params)
        half.step()
    saved = pickle.loads(pickle.dumps((half.state_dict(), [p.detach().clone() for p in half_params], schedule)))
    state, values, sched = saved
    assert sched == schedule
    resumed_params, resumed = fresh(sched)
    with torch.no_grad():
        for p, v in zip(resumed_params, values):
            p.copy_(v)
    resumed.load_state_dict(state)
    for k in range(steps // 2, steps):
        grads(k, resumed_params)
        resumed.step()
    for p, q in zip(resumed_params, full_params):
        assert torch.equal(p, q)
    assert resumed.get_last_lr() == full.get_last_lr()


__all__ = ["timm_module", "timm_scheduler", "deepspeed_lr_schedules", "torch_optimizer", "record", "assert_schedule_lrs",
           "run_against_recorded", "assert_resume_is_exact", "lrfused"]
