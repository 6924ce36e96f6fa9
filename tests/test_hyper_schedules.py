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
        # "lr": timm's corrected weight decay, relative to the optimizer's lr (its default here: 1e-3)
        out[name] = base * (lr / kw.get("lr", 1e-3)) if s == "lr" else s.lr_at(k, base)
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


def _run_legacy_case(opt, params, ks):
    for k in ks:
        for p in params:
            p.grad = torch.full_like(p, 0.1 * (k + 1))
        opt.step()


def _legacy_case():
    """Two groups, per-group OneCycleLR lists: what the 8-slot-header upgrade must carry over."""
    params = [torch.nn.Parameter(torch.ones(4)) for _ in GROUP_LRS]
    return params, lrfused.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, GROUP_LRS)], momentum=0.9,
                               schedule=S.OneCycleLR([0.1, 0.2], total_steps=20))


def test_a_checkpoint_from_before_the_scratch_slots_resumes_exactly():
    """sched_state saved with the 8-slot header of earlier lrfused versions loads into today's layout."""
    full_params, full = _legacy_case()
    _run_legacy_case(full, full_params, range(12))
    params, opt = _legacy_case()
    _run_legacy_case(opt, params, range(6))
    sd = opt.state_dict()
    legacy = {}
    for name, s in sd["lrfused"]["sched_state"].items():
        legacy[name] = torch.cat([s[:8], s[SchedLayout.HEADER:]])  # an 8-slot header, as saved before
    sd["lrfused"]["sched_state"] = legacy
    resumed_params, resumed = _legacy_case()
    with torch.no_grad():
        for p, q in zip(resumed_params, params):
            p.copy_(q)
    resumed.load_state_dict(sd)
    _run_legacy_case(resumed, resumed_params, range(6, 12))
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


def test_an_absolute_weight_decay_schedule_from_a_base_of_zero(device):
    """weight_decay=0 with a weight decay schedule (optax's absolute values) still decays: the kernels pick
    their weight decay variant from the schedule, not from the base (once a GPU bug)."""
    gen = torch.Generator().manual_seed(7)
    p0 = torch.randn(50, dtype=torch.float64, generator=gen)
    ours = torch.nn.Parameter(p0.clone().to(device))
    theirs = torch.nn.Parameter(p0.clone())
    wd = S.optax.linear_schedule(0.5, 0.1, 10)
    for opt_cls in (lrfused.AdamW, lrfused.Adam):
        lrf = opt_cls([ours], lr=0.1, weight_decay=0.0, hyper_schedules={"weight_decay": wd})
        ref = getattr(torch.optim, opt_cls.__name__)([theirs], lr=0.1, weight_decay=0.0, foreach=False)
        for k in range(12):
            ref.param_groups[0]["weight_decay"] = wd.lr_at(k, 0.0)
            g = torch.randn(50, dtype=torch.float64, generator=gen)
            ours.grad, theirs.grad = g.to(device), g.clone()
            lrf.step()
            ref.step()
        torch.testing.assert_close(ours.detach().cpu(), theirs.detach(), rtol=1e-12, atol=1e-12)


def test_corrected_weight_decay_divides_by_the_optimizers_lr_in_every_group():
    """timm's max_lr_snapshot is the optimizer's lr, also for groups with an lr of their own."""
    from schedule_oracles import timm_module

    cls = timm_module("timm.optim.adamw").AdamWLegacy
    gen = torch.Generator().manual_seed(8)
    p0 = [torch.randn(20, dtype=torch.float64, generator=gen) for _ in range(2)]
    theirs = [torch.nn.Parameter(v.clone()) for v in p0]
    ours = [torch.nn.Parameter(v.clone()) for v in p0]
    ref = cls([{"params": [theirs[0]]}, {"params": [theirs[1]], "lr": 0.01}], lr=0.05, weight_decay=0.2,
              corrected_weight_decay=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(ref, 15)
    lrf = lrfused.AdamW([{"params": [ours[0]]}, {"params": [ours[1]], "lr": 0.01}], lr=0.05, weight_decay=0.2,
                        schedule=S.CosineAnnealingLR(15), hyper_schedules={"weight_decay": "lr"})
    for _ in range(12):
        for a, b in zip(ours, theirs):
            g = torch.randn(20, dtype=torch.float64, generator=gen)
            a.grad, b.grad = g.clone(), g.clone()
        ref.step()
        sched.step()
        lrf.step()
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-11, atol=1e-12)


def test_per_group_hyper_schedules_survive_a_torch_checkpoint():
    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(2)]
    own = {"weight_decay": S.LinearLR(1.0, 0.0, 5)}
    opt = lrfused.AdamW([{"params": [params[0]]}, {"params": [params[1]], "hyper_schedules": own}], lr=0.1)
    torch_sd = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(3))]} for _ in range(2)],
                                 lr=0.1).state_dict()
    opt.load_state_dict(torch_sd)
    assert opt.param_groups[0]["hyper_schedules"] == {}
    assert opt.param_groups[1]["hyper_schedules"] == own


def test_a_refused_checkpoint_changes_nothing():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = lrfused.SGD([p], lr=0.1, momentum=0.9)
    sd = opt.state_dict()
    sd["param_groups"][0]["lr"] = 123.0
    sd["param_groups"][0]["hyper_schedules"] = {"beta2": S.StepLR(2)}  # not an SGD hyperparameter
    before = [dict(g) for g in opt.param_groups]
    with pytest.raises(ValueError, match="schedules dampening, weight_decay"):
        opt.load_state_dict(sd)
    assert [dict(g) for g in opt.param_groups] == before


def test_a_hyper_schedules_end_is_enforced_like_the_lrs():
    p = torch.nn.Parameter(torch.zeros(3))
    opt = lrfused.AdamW([p], lr=0.1, hyper_schedules={"weight_decay": S.LambdaLR(lambda k: 1.0 - 0.1 * k, 3)})
    for _ in range(3):
        p.grad = torch.ones(3)
        opt.step()
    before = p.detach().clone()
    with pytest.raises(ValueError, match="past the end of the schedule"):
        opt.step()
    assert torch.equal(p.detach(), before)


def test_nesterov_refuses_a_dampening_schedule():
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        lrfused.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9, nesterov=True,
                    hyper_schedules={"dampening": S.LinearLR(1.0, 0.0, 5)})


def test_an_optimizer_pickled_before_the_scratch_slots_resumes_exactly():
    """A pickled optimizer (not a state_dict) with the 8-slot sched_state header of earlier versions."""
    full_params, full = _legacy_case()
    _run_legacy_case(full, full_params, range(12))
    params, opt = _legacy_case()
    _run_legacy_case(opt, params, range(6))
    blob = pickle.dumps((params, opt))
    resumed_params, resumed = pickle.loads(blob)
    for d, s in list(resumed._sched_states.items()):  # as an earlier version pickled it
        resumed._sched_states[d] = torch.cat([s[:8], s[SchedLayout.HEADER:]])
    resumed_params, resumed = pickle.loads(pickle.dumps((resumed_params, resumed)))
    _run_legacy_case(resumed, resumed_params, range(6, 12))
    for p, q in zip(resumed_params, full_params):
        assert torch.equal(p, q)


def test_checkpoints_with_every_new_kind_load_with_weights_only():
    """torch.load(weights_only=True), trainers' default, reads checkpoints holding the new schedules,
    hyper_schedules and GreedyLR's state (every Schedule class is on torch's allowlist)."""
    import io

    params = [torch.nn.Parameter(torch.zeros(3)) for _ in range(4)]
    groups = [
        {"params": [params[0]], "schedule": S.timm.WSDLRScheduler(20, 5, decay_fn=lambda f: 1 - f, t_in_epochs=False,
                                                                   noise_range_t=[2, 9])},
        {"params": [params[1]], "schedule": S.deepspeed.OneCycle(0.01, 0.1).clamp(0.02).restart(50)},
        {"params": [params[2]], "schedule": S.optax.sgdr_schedule([dict(init_value=0.0, peak_value=1.0,
                                                                        warmup_steps=2, decay_steps=8)])},
        {"params": [params[3]], "hyper_schedules": {"eps": S.optax.exponential_decay(1e-6, 3, 0.5),
                                                    "weight_decay": "lr"}},
    ]
    opt = lrfused.AdamW(groups, lr=0.1)
    for _ in range(3):
        for p in params:
            p.grad = torch.ones(3)
        opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert [g["schedule"] for g in loaded["param_groups"]] == [g["schedule"] for g in opt.param_groups]
    assert loaded["param_groups"][3]["hyper_schedules"] == opt.param_groups[3]["hyper_schedules"]
    greedy = lrfused.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1,
                         schedule=S.get_schedule("greedy", smooth=True, window_size=4))
    greedy.report(1.0)
    buf = io.BytesIO()
    torch.save(greedy.state_dict(), buf)
    buf.seek(0)
    again = lrfused.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1,
                        schedule=S.get_schedule("greedy", smooth=True, window_size=4))
    again.load_state_dict(torch.load(buf, weights_only=True))
    assert again.schedule_state.plateau == greedy.schedule_state.plateau
