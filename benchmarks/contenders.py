"""The contenders: torch's three optimizer paths with the equivalent torch scheduler, lrfused, and
DeepSpeed / apex where importable.

A contender is built on a fresh parameter list and returns (optimizer, step) where `step()` is the timed
unit: `opt.step(); sched.step()` for everything driven by a torch scheduler, just `opt.step()` for
lrfused (its schedule runs inside the step).
"""
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
# name -> (torch scheduler factory(opt, T), lrfused schedule factory(S, T, lr), description)
# T is the schedule length; it is set far beyond the number of steps any contender takes.

SCHEDULES = {
    "cosine": (
        lambda opt, T: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T),
        lambda S, T, lr: S.CosineAnnealingLR(T_max=T),
        "CosineAnnealingLR(T_max={T})",
    ),
    "linear": (
        lambda opt, T: torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.0,
                                                         total_iters=T),
        lambda S, T, lr: S.LinearLR(start_factor=1.0, end_factor=0.0, total_iters=T),
        "LinearLR(start_factor=1.0, end_factor=0.0, total_iters={T})",
    ),
    "step": (
        lambda opt, T: torch.optim.lr_scheduler.StepLR(opt, step_size=max(T // 100, 1), gamma=0.9),
        lambda S, T, lr: S.StepLR(step_size=max(T // 100, 1), gamma=0.9),
        "StepLR(step_size={T}//100, gamma=0.9)",
    ),
    "onecycle": (
        lambda opt, T: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=opt.param_groups[0]["lr"],
                                                           total_steps=T),
        lambda S, T, lr: S.OneCycleLR(max_lr=lr, total_steps=T),
        "OneCycleLR(max_lr=lr, total_steps={T})",
    ),
    "constant": (None, None, "no scheduler (constant lr)"),
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


def make_lrfused(optimizer, params, schedule, T):
    lrfused, why = lrfused_module()
    if lrfused is None:
        raise RuntimeError(why)
    S = lrfused.schedules
    cls = getattr(lrfused, TORCH_CLASS[optimizer])
    sched_factory = SCHEDULES[schedule][1]
    sched = sched_factory(S, T, HYPER[optimizer]["lr"]) if sched_factory else None
    return cls(params, **torch_kwargs(optimizer), schedule=sched)


def make_torch(optimizer, params, path, schedule, T):
    cls = getattr(torch.optim, TORCH_CLASS[optimizer])
    return _with_scheduler(cls(params, **torch_kwargs(optimizer), **TORCH_PATHS[path]), schedule, T)


def _with_scheduler(opt, schedule, T):
    factory = SCHEDULES[schedule][0]
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
    and compare every parameter. None when they agree; the reason otherwise."""
    key = (optimizer, str(device), str(dtype), schedule)
    if key in _VERIFIED:
        return _VERIFIED[key]
    T = 10
    try:
        g = torch.Generator(device="cpu").manual_seed(0)
        shapes = [(37,), (3, 97), (1000,)]
        init = [torch.randn(s, generator=g, dtype=torch.float32) for s in shapes]
        grads = [torch.randn(s, generator=g, dtype=torch.float32) for s in shapes]
        ref = [p.clone().to(device, dtype).requires_grad_() for p in init]
        mine = [p.clone().to(device, dtype).requires_grad_() for p in init]
        for p, q, gr in zip(ref, mine, grads):
            p.grad = gr.to(device, dtype)
            q.grad = gr.to(device, dtype)
        _, ref_step = make_torch(optimizer, ref, "torch-forloop", schedule, T)
        opt = make_lrfused(optimizer, mine, schedule, T)
        for _ in range(steps):
            ref_step()
            opt.step()
        tol = {torch.float32: (1e-5, 1e-6), torch.float64: (1e-10, 1e-12)}.get(dtype, (2e-2, 2e-3))
        for i, (p, q) in enumerate(zip(ref, mine)):
            if not torch.allclose(q.detach().float(), p.detach().float(), rtol=tol[0], atol=tol[1]):
                diff = (q.detach().float() - p.detach().float()).abs().max().item()
                _VERIFIED[key] = (f"lrfused.{TORCH_CLASS[optimizer]} disagrees with torch.optim."
                                  f"{TORCH_CLASS[optimizer]} + {schedule} scheduler after {steps} steps "
                                  f"(tensor {i}, max abs diff {diff:.3g}); not timed")
                return _VERIFIED[key]
        _VERIFIED[key] = None
    except Exception as exc:  # noqa: BLE001 - a stub or a missing piece: report, do not crash
        _VERIFIED[key] = f"lrfused.{TORCH_CLASS[optimizer]} is not functional yet ({_short(exc)})"
    return _VERIFIED[key]
