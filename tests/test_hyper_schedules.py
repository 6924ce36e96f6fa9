"""Schedules for the other hyperparameters (``hyper_schedules=``: weight decay, Adam's beta2 and eps, SGD's
dampening), evaluated in the same kernel pass from the same step counter: against torch's optimizers
running live with those values written into their groups before every step, against optax's
inject_hyperparams(adamw) running live, timm's corrected weight decay, a resume in the middle, old
checkpoints, bad arguments."""
import pickle

import pytest
import torch

import lrfused
from lrfused import schedules as S
from lrfused.contract import SchedLayout
from lrfused.testing import TOLERANCE

from schedule_oracles import assert_resume_is_exact

STEPS = 25
GROUP_LRS = [0.05, 0.01]

CASES = {
    "adamw-wd-beta2-eps": (lrfused.AdamW, dict(weight_decay=0.1, betas=(0.9, 0.99), eps=1e-6),
                           lambda: S.CosineAnnealingLR(STEPS),
                           lambda: {"weight_decay": S.LinearLR(1.0, 0.1, 20),
                                    "beta2": S.optax.linear_schedule(0.9, 0.999, 15),
                                    "eps": S.ExponentialLR(0.8)}),
    "adam-l2-wd-follows-lr": (lrfused.Adam, dict(weight_decay=0.05), lambda: S.OneCycleLR(0.1, total_steps=STEPS),
                              lambda: {"weight_decay": "lr", "eps": S.StepLR(5, 10.0)}),
    "adamw-amsgrad-beta2-only": (lrfused.AdamW, dict(amsgrad=True), lambda: S.Constant(),
                                 lambda: {"beta2": S.optax.exponential_decay(0.95, 5, 1.02, end_value=0.999)}),
    "sgd-dampening-wd": (lrfused.SGD, dict(momentum=0.9, dampening=0.5, weight_decay=0.01),
                         lambda: S.get_schedule("linear", 3, STEPS),
                         lambda: {"dampening": S.LinearLR(1.0, 0.0, 10), "weight_decay": S.CosineAnnealingLR(8)}),
}


def _hyper_values(opt_cls, kw, schedule, hyper, g, k):
    """The hyperparameters the k-th step of group g applies, from the schedules' own evaluation."""
    base_lr = GROUP_LRS[g]
    lr = schedule.lr_at(k, base_lr, group=g, num_groups=len(GROUP_LRS))
    out = {"lr": lr}
    defaults = {"weight_decay": kw.get("weight_decay", 1e-2 if opt_cls is lrfused.AdamW else 0.0),
                "beta2": kw.get("betas", (0.9, 0.999))[1], "eps": kw.get("eps", 1e-8),
                "dampening": kw.get("dampening", 0.0)}
    for name, s in hyper.items():
        base = defaults[name]
        out[name] = base * (lr / base_lr) if s == "lr" else s.lr_at(k, base)
    if schedule.cycles_momentum:
        out["momentum"] = schedule.momentum_at(k, 0.9, group=g, num_groups=len(GROUP_LRS))
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_hyper_schedules_match_torch_given_the_values(case, device):
    opt_cls, kw, make_schedule, make_hyper = CASES[case]
    schedule, hyper = make_schedule(), make_hyper()
    gen = torch.Generator().manual_seed(0)
    values = [torch.randn(6, 5, generator=gen, dtype=torch.float64) for _ in GROUP_LRS]
    a = [torch.nn.Parameter(v.clone().to(device)) for v in values]
    b = [torch.nn.Parameter(v.clone()) for v in values]
    lrf = opt_cls([{"params": [p], "lr": lr} for p, lr in zip(a, GROUP_LRS)], schedule=schedule,
                  hyper_schedules=hyper, **kw)
    ref = getattr(torch.optim, opt_cls.__name__)([{"params": [p], "lr": lr} for p, lr in zip(b, GROUP_LRS)],
                                                 foreach=False, **kw)
    moved = set()
    for k in range(STEPS):
        for g, group in enumerate(ref.param_groups):
            h = _hyper_values(opt_cls, kw, schedule, hyper, g, k)
            group["lr"] = h["lr"]
            for name in ("weight_decay", "eps", "dampening"):
                if name in h:
                    moved.add(name) if h[name] != group[name] else None
                    group[name] = h[name]
            if "beta2" in h:
                moved.add("beta2") if h["beta2"] != group["betas"][1] else None
                group["betas"] = (group["betas"][0], h["beta2"])
            if "momentum" in h:
                group["betas"] = (h["momentum"], group["betas"][1])
        for p, q in zip(a, b):
            grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.grad, q.grad = grad.to(device), grad.clone()
        lrf.step()
        ref.step()
    assert moved, "the schedules should change some hyperparameter"
    tol = TOLERANCE[torch.float64]
    for p, q in zip(a, b):
        torch.testing.assert_close(p.detach().cpu(), q.detach(), rtol=tol, atol=tol)
    # the groups keep their base values; the lr follows torch's convention
    assert lrf.param_groups[0]["weight_decay"] == ref.defaults["weight_decay"]


def test_against_optax_inject_hyperparams_adamw():
    """optax.inject_hyperparams(optax.adamw) with schedules for every hyperparameter, running live (fp64),
    against lrfused.AdamW with the same optax schedules: the same parameters after every update."""
    optax = pytest.importorskip("optax")
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    try:
        import jax.numpy as jnp

        lr_s = (optax.schedules.warmup_cosine_decay_schedule, (0.0, 0.05, 5, STEPS))
        b2_s = (optax.schedules.linear_schedule, (0.9, 0.999, 12))
        eps_s = (optax.schedules.exponential_decay, (1e-3, 4, 0.5))
        wd_s = (optax.schedules.piecewise_constant_schedule, (0.1, {8: 0.5, 16: 0.0}))
        def f64(make, args):  # inject_hyperparams counts in int32, which optax's schedules turn into float32
            schedule = make(*args)
            return lambda count: schedule(jnp.asarray(count, jnp.float64))

        tx = optax.inject_hyperparams(optax.adamw)(learning_rate=f64(*lr_s), b1=0.9, b2=f64(*b2_s), eps=f64(*eps_s),
                                                   weight_decay=f64(*wd_s))
        gen = torch.Generator().manual_seed(3)
        p0 = torch.randn(40, dtype=torch.float64, generator=gen)
        grads = [torch.randn(40, dtype=torch.float64, generator=gen) for _ in range(STEPS)]
        params = jnp.asarray(p0.numpy())
        opt_state = tx.init(params)
        ours = torch.nn.Parameter(p0.clone())
        lrf = lrfused.AdamW([ours], lr=1.0,  # optax's schedules are absolute: the bases are not read
                            schedule=getattr(S.optax, lr_s[0].__name__)(*lr_s[1]),
                            hyper_schedules={"beta2": getattr(S.optax, b2_s[0].__name__)(*b2_s[1]),
                                             "eps": getattr(S.optax, eps_s[0].__name__)(*eps_s[1]),
                                             "weight_decay": getattr(S.optax, wd_s[0].__name__)(*wd_s[1])})
        for k in range(STEPS):
            updates, opt_state = tx.update(jnp.asarray(grads[k].numpy()), opt_state, params)
            params = optax.apply_updates(params, updates)
            ours.grad = grads[k].clone()
            lrf.step()
            torch.testing.assert_close(ours.detach(), torch.from_numpy(jax.device_get(params).copy()),
                                       rtol=1e-12, atol=1e-13, msg=f"step {k}")
    finally:
        jax.config.update("jax_enable_x64", False)


def test_corrected_weight_decay_is_timms():
    """weight_decay="lr" is timm's corrected_weight_decay: decay lr_k^2 / lr_max * wd, against
    timm.optim.AdamW(corrected_weight_decay=True) driven by a torch scheduler, running live."""
    from schedule_oracles import timm_module

    timm_adamw = timm_module("timm.optim.adamw")
    cls = getattr(timm_adamw, "AdamWLegacy", None) or getattr(timm_adamw, "AdamW")
    gen = torch.Generator().manual_seed(4)
    p0 = torch.randn(30, dtype=torch.float64, generator=gen)
    theirs = torch.nn.Parameter(p0.clone())
    ours = torch.nn.Parameter(p0.clone())
    ref = cls([theirs], lr=0.05, weight_decay=0.2, corrected_weight_decay=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, 20, eta_min=0.001)
    lrf = lrfused.AdamW([ours], lr=0.05, weight_decay=0.2, schedule=S.CosineAnnealingLR(20, eta_min=0.001),
                        hyper_schedules={"weight_decay": "lr"})
    for _ in range(25):
        g = torch.randn(30, dtype=torch.float64, generator=gen)
        theirs.grad, ours.grad = g.clone(), g.clone()
        ref.step()
        sched.step()
        lrf.step()
    torch.testing.assert_close(ours.detach(), theirs.detach(), rtol=1e-11, atol=1e-12)


def test_resume_in_the_middle():
    _, kw, make_schedule, make_hyper = CASES["adamw-wd-beta2-eps"]
    assert_resume_is_exact(lrfused.AdamW, make_schedule(), GROUP_LRS, steps=24,
                           hyper_schedules=make_hyper(), **kw)


def test_hyper_schedules_are_saved_with_the_groups():
    _, kw, make_schedule, make_hyper = CASES["sgd-dampening-wd"]
    p = torch.nn.Parameter(torch.zeros(3))
    opt = lrfused.SGD([p], lr=0.1, schedule=make_schedule(), hyper_schedules=make_hyper(), **kw)
    sd = pickle.loads(pickle.dumps(opt.state_dict()))
    assert sd["param_groups"][0]["hyper_schedules"] == make_hyper()
    other = lrfused.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, **kw)
    other.load_state_dict(sd)
    assert other.param_groups[0]["hyper_schedules"] == make_hyper()
    torch_sd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1, **kw).state_dict()
    opt.load_state_dict(torch_sd)  # a torch checkpoint carries none: the constructor's stay, as its schedule does
    assert opt.param_groups[0]["hyper_schedules"] == make_hyper()
    assert opt.param_groups[0]["schedule"] == make_schedule()


def test_a_checkpoint_from_before_the_scratch_slots_resumes_exactly():
    """sched_state saved with the 8-slot header of earlier lrfused versions loads into today's layout."""
    def run(opt, params, ks):
        for k in ks:
            for p in params:
                p.grad = torch.full_like(p, 0.1 * (k + 1))
            opt.step()

    def make():
        params = [torch.nn.Parameter(torch.ones(4)) for _ in GROUP_LRS]
        return params, lrfused.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, GROUP_LRS)], momentum=0.9,
                                   schedule=S.OneCycleLR([0.1, 0.2], total_steps=20))

    full_params, full = make()
    run(full, full_params, range(12))
    params, opt = make()
    run(opt, params, range(6))
    sd = opt.state_dict()
    legacy = {}
    for name, s in sd["lrfused"]["sched_state"].items():
        legacy[name] = torch.cat([s[:8], s[SchedLayout.HEADER:]])  # an 8-slot header, as saved before
    sd["lrfused"]["sched_state"] = legacy
    resumed_params, resumed = make()
    with torch.no_grad():
        for p, q in zip(resumed_params, params):
            p.copy_(q)
    resumed.load_state_dict(sd)
    run(resumed, resumed_params, range(6, 12))
    for p, q in zip(resumed_params, full_params):
        assert torch.equal(p, q)
    assert resumed.get_last_lr() == full.get_last_lr()


@pytest.mark.parametrize("opt_cls,hyper,exc,match", [
    (lrfused.AdamW, {"dampening": S.StepLR(2)}, ValueError, "schedules beta2, eps, weight_decay"),
    (lrfused.SGD, {"beta2": S.StepLR(2)}, ValueError, "schedules dampening, weight_decay"),
    (lrfused.AdamW, {"lr": S.StepLR(2)}, ValueError, "through `schedule`"),
    (lrfused.AdamW, {"eps": 1e-6}, TypeError, "must be a lrfused.schedules.Schedule"),
    (lrfused.AdamW, {"beta2": "lr"}, TypeError, "must be a lrfused.schedules.Schedule"),
    (lrfused.AdamW, {"weight_decay": S.ReduceLROnPlateau()}, ValueError, "metric-driven"),
    (lrfused.AdamW, [S.StepLR(2)], TypeError, "hyper_schedules must be a dict"),
    (lrfused.AdamW, {"weight_decay": S.OneCycleLR([0.1, 0.2, 0.3], total_steps=10)}, ValueError,
     "same length as optimizer.param_groups"),
])
def test_bad_hyper_schedules_are_refused_before_anything_changes(opt_cls, hyper, exc, match):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in GROUP_LRS]
    with pytest.raises(exc, match=match):
        opt_cls([{"params": [p], "lr": lr} for p, lr in zip(params, GROUP_LRS)], hyper_schedules=hyper)
    opt = opt_cls([{"params": [params[0]]}], lr=0.1)
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(exc, match=match):
        opt.add_param_group({"params": [params[1]], "hyper_schedules": hyper})
    assert [dict(g) for g in opt.param_groups] == before
