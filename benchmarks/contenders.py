"""The contenders: torch's three optimizer paths with the equivalent torch scheduler, lrfused, and
DeepSpeed / apex where importable.

A contender is built on a fresh parameter list and returns (optimizer, step) where `step()` is the timed
unit: `opt.step(); sched.step()` for everything driven by a torch scheduler, just `opt.step()` for
lrfused (its schedule runs inside the step).
"""
from typing import Callable, NamedTuple, Optional

import torch

OPTIMIZERS = ("adamw", "adam", "sgd")
CONTENDERS = ("torch-forloop", "torch-foreach", "torch-fused", "lrfused", "deepspeed-cpuadam",
              "apex-fused")
TORCH_PATHS = {
    "torch-forloop": {"foreach": False},
    "torch-foreach": {"foreach": True},
    "torch-fused": {"fused": True},
}

# Hyper-parameters shared by every contender (torch's defaults besides lr; SGD with momentum).
HYPER = {
    "adamw": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2},
    "adam": {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "sgd": {"lr": 1e-3, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False},
}
TORCH_CLASS = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}

# Byte model: tensor element accesses per parameter per step in the minimal one-pass update, times the
# element size. AdamW/Adam: param r+w, grad r, exp_avg r+w, exp_avg_sq r+w = 7 accesses (28 B fp32).
# SGD with momentum: param r+w, grad r, momentum_buffer r+w = 5 accesses (20 B fp32).
ACCESSES = {"adamw": 7, "adam": 7, "sgd": 5}
ACCESS_DETAIL = {
    "adamw": "param r+w, grad r, exp_avg r+w, exp_avg_sq r+w",
    "adam": "param r+w, grad r, exp_avg r+w, exp_avg_sq r+w",
    "sgd": "param r+w, grad r, momentum_buffer r+w",
}


def bytes_per_param(optimizer, dtype):
    return ACCESSES[optimizer] * torch.empty((), dtype=dtype).element_size()


# ---------------------------------------------------------------------------------------- schedules
# name -> (torch scheduler factory(opt, T), description). T is the schedule length; it is set far beyond
# the number of steps any contender takes. lrfused's side is not written here: it is S.from_torch of the
# very scheduler the factory builds (see lrfused_schedule).


class ScheduleChoice(NamedTuple):
    torch_factory: Optional[Callable]  # (opt, T) -> a torch.optim.lr_scheduler; None: constant lr
    description: str  # formatted with T=


SCHEDULES = {
    "cosine": ScheduleChoice(
        lambda opt, T: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T),
        "CosineAnnealingLR(T_max={T})",
    ),
    "linear": ScheduleChoice(
        lambda opt, T: torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0,
                                                         total_iters=T),
        "LinearLR(start_factor=1.0, end_factor=0.0, total_iters={T})",
    ),
    "step": ScheduleChoice(
        lambda opt, T: torch.optim.lr_scheduler.StepLR(opt, step_size=max(T // 100, 1), gamma=0.9),
        "StepLR(step_size={T}//100, gamma=0.9)",
    ),
    "onecycle": ScheduleChoice(
        lambda opt, T: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"],
                                                           total_steps=T),
        "OneCycleLR(max_lr=lr, total_steps={T})",
    ),
    "constant": ScheduleChoice(None, "no scheduler (constant lr)"),
}


def torch_kwargs(optimizer):
    return dict(HYPER[optimizer])


# -------------------------------------------------------------------------------------- availability

def _short(exc):
    msg = " ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {msg}"[:400]


def lrfused_module():
    """(module, None) or (None, reason)."""
    try:
        import lrfused
        from lrfused import schedules  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "skip with the reason"
        return None, f"lrfused is not importable ({_short(exc)})"
    return lrfused, None


def lrfused_schedule(S, optimizer, schedule, T):
    """lrfused's side of `schedule`: ``S.from_torch`` of the torch scheduler the torch contenders get,
    built on a throwaway optimizer with the same hyper-parameters (from_torch reads only the scheduler's
    configuration). None for "constant"."""
    factory = SCHEDULES[schedule].torch_factory
    if factory is None:
        return None
    throwaway = getattr(torch.optim, TORCH_CLASS[optimizer])([torch.zeros(1)], **torch_kwargs(optimizer))
    return S.from_torch(factory(throwaway, T))


def make_lrfused(optimizer, params, schedule, T):
    lrfused, why = lrfused_module()
    if lrfused is None:
        raise RuntimeError(why)
    cls = getattr(lrfused, TORCH_CLASS[optimizer])
    return cls(params, **torch_kwargs(optimizer),
               schedule=lrfused_schedule(lrfused.schedules, optimizer, schedule, T))


def make_torch(optimizer, params, path, schedule, T):
    cls = getattr(torch.optim, TORCH_CLASS[optimizer])
    return _with_scheduler(cls(params, **torch_kwargs(optimizer), **TORCH_PATHS[path]), schedule, T)


def _with_scheduler(opt, schedule, T):
    factory = SCHEDULES[schedule].torch_factory
    if factory is None:
        return opt, opt.step
    sched = factory(opt, T)

    def step():
        opt.step()
        sched.step()

    return opt, step


def make_deepspeed(optimizer, params, schedule, T):
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    h = HYPER[optimizer]
    opt = DeepSpeedCPUAdam(params, lr=h["lr"], betas=h["betas"], eps=h["eps"],
                           weight_decay=h["weight_decay"], adamw_mode=(optimizer == "adamw"))
    return _with_scheduler(opt, schedule, T)


def make_apex(optimizer, params, schedule, T):
    h = HYPER[optimizer]
    if optimizer == "sgd":
        from apex.optimizers import FusedSGD

        opt = FusedSGD(params, lr=h["lr"], momentum=h["momentum"], dampening=h["dampening"],
                       weight_decay=h["weight_decay"], nesterov=h["nesterov"])
    else:
        from apex.optimizers import FusedAdam

        opt = FusedAdam(params, lr=h["lr"], betas=h["betas"], eps=h["eps"],
                        weight_decay=h["weight_decay"], adam_w_mode=(optimizer == "adamw"))
    return _with_scheduler(opt, schedule, T)


def build(contender, optimizer, params, schedule, T):
    """Returns (optimizer object, timed step callable)."""
    if contender in TORCH_PATHS:
        return make_torch(optimizer, params, contender, schedule, T)
    if contender == "lrfused":
        opt = make_lrfused(optimizer, params, schedule, T)
        return opt, opt.step
    if contender == "deepspeed-cpuadam":
        return make_deepspeed(optimizer, params, schedule, T)
    if contender == "apex-fused":
        return make_apex(optimizer, params, schedule, T)
    raise ValueError(f"unknown contender {contender!r}")


def unavailable_reason(contender, optimizer, device, dtype, schedule):
    """None when the contender can run this (optimizer, device, dtype); otherwise why not. lrfused is
    also checked against torch's own result (see verify_lrfused), so a stub or a wrong kernel is
    reported rather than timed."""
    if contender in TORCH_PATHS:
        return None
    if contender == "lrfused":
        lrfused, why = lrfused_module()
        if lrfused is None:
            return why
        if device.type == "cuda":
            try:
                if not lrfused.has_cuda():
                    return "lrfused was built without CUDA kernels (lrfused.has_cuda() is False)"
            except Exception as exc:  # noqa: BLE001
                return f"lrfused.has_cuda() failed ({_short(exc)})"
        return verify_lrfused(optimizer, device, dtype, schedule)
    if contender == "deepspeed-cpuadam":
        if optimizer == "sgd":
            return "DeepSpeedCPUAdam has no SGD"
        if device.type != "cpu":
            return "DeepSpeedCPUAdam runs on CPU parameters only"
        try:
            from deepspeed.ops.adam import DeepSpeedCPUAdam  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            return f"deepspeed is not importable ({_short(exc)})"
        return None
    if contender == "apex-fused":
        if device.type != "cuda":
            return "apex FusedAdam/FusedSGD are CUDA-only"
        try:
            from apex.optimizers import FusedAdam, FusedSGD  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            return f"apex is not importable ({_short(exc)})"
        return None
    return f"unknown contender {contender!r}"


_VERIFIED = {}


def verify_lrfused(optimizer, device, dtype, schedule, steps=6):
    """Run lrfused and torch's single-tensor optimizer + scheduler side by side on a few small tensors
    and compare every parameter after every step, within the tests' tolerance for `dtype`
    (lrfused.testing). None when they agree; the reason otherwise (never raises).

    As in the tests, bfloat16 / float16 runs are resynced (torch's parameters and state set to
    lrfused's) after each step, so that each comparison is one update from identical inputs: the
    low-precision tolerance is a bound on one step's rounding, not on rounding compounded over steps."""
    key = (optimizer, str(device), str(dtype), schedule)
    if key in _VERIFIED:
        return _VERIFIED[key]
    T = 10
    name = TORCH_CLASS[optimizer]
    try:
        from lrfused.testing import assert_close

        g = torch.Generator(device="cpu").manual_seed(0)
        shapes = [(37,), (3, 97), (1000,)]
        init = [torch.randn(s, generator=g, dtype=torch.float32) for s in shapes]
        grads = [torch.randn(s, generator=g, dtype=torch.float32) for s in shapes]
        ref = [p.clone().to(device, dtype).requires_grad_() for p in init]
        mine = [p.clone().to(device, dtype).requires_grad_() for p in init]
        for p, q, gr in zip(ref, mine, grads):
            p.grad = gr.to(device, dtype)
            q.grad = gr.to(device, dtype)
        ref_opt, ref_step = make_torch(optimizer, ref, "torch-forloop", schedule, T)
        opt = make_lrfused(optimizer, mine, schedule, T)
        resync = dtype in (torch.bfloat16, torch.float16)
        for k in range(steps):
            before = [p.detach().clone() for p in ref]
            ref_step()
            opt.step()
            for i, (p, q, b) in enumerate(zip(ref, mine, before)):
                try:
                    assert_close(q, p, before=b if resync else None)
                except AssertionError:
                    diff = (q.detach().double() - p.detach().double()).abs().max().item()
                    _VERIFIED[key] = (f"lrfused.{name} disagrees with torch.optim.{name} + {schedule} "
                                      f"scheduler at step {k + 1} of {steps} (tensor {i}, max abs diff "
                                      f"{diff:.3g}, beyond the {dtype} tolerance of lrfused.testing); "
                                      f"not timed")
                    return _VERIFIED[key]
            if resync:
                _resync(ref_opt, ref, opt, mine)
        _VERIFIED[key] = None
    except Exception as exc:  # noqa: BLE001 - a stub or a missing piece: report, do not crash
        _VERIFIED[key] = f"lrfused.{name} is not functional yet ({_short(exc)})"
    return _VERIFIED[key]


def _resync(ref_opt, ref, opt, mine):
    """torch's parameters and tensor state := lrfused's (same keys as torch's, see API.md)."""
    with torch.no_grad():
        for p, q in zip(ref, mine):
            p.copy_(q)
            for k, v in ref_opt.state[p].items():
                if isinstance(v, torch.Tensor):
                    v.copy_(opt.state[q][k])
