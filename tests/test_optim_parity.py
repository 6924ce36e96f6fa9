"""lrfused.SGD/Adam/AdamW vs torch.optim (foreach=False) + torch.optim.lr_scheduler, live, every step.

Tolerances and their justification: lrfused.testing (TOLERANCE). The parity tests take the `device` fixture
(tests/conftest.py): each runs on the CPU and, where lrfused was built with CUDA and a GPU is visible, on the GPU.
"""
import pytest
import torch
from torch.optim import lr_scheduler as L

import lrfused
from lrfused import schedules as S

from optim_helpers import (
    ALL_SCHEDULES,
    OPTIONS,
    SCHEDULES,
    ScheduleSpec,
    assert_lr_close,
    compare_states,
    draw_grads,
    extra_state_keys,
    leaf_pair,
    make_values,
    option_id,
    plateau_metric,
    run_parity,
    set_grads,
)

OPT_NAMES = ("SGD", "Adam", "AdamW")


def _sgd_without_momentum_cycled(opt, options, spec):
    return opt == "SGD" and not options.get("momentum") and spec.cycles_momentum


def _schedule_sweep_cases():
    # every schedule family x every optimizer, each with two option sets (rotating through OPTIONS so
    # that every option set meets many families)
    cases = []
    for opt in OPT_NAMES:
        opts = OPTIONS[opt]
        for i, name in enumerate(ALL_SCHEDULES):
            for j in (0, 1 + i % (len(opts) - 1)):
                if _sgd_without_momentum_cycled(opt, opts[j], ALL_SCHEDULES[name]):
                    j = 1  # covered by test_momentum_cycling_overrides_constructor_momentum
                cases.append(pytest.param(opt, opts[j], name, id=f"{opt}-{option_id(opts[j])}-{name}"))
    return cases


@pytest.mark.parametrize("opt_name,options,sched_name", _schedule_sweep_cases())
def test_parity_fp64_schedules(opt_name, options, sched_name, device):
    run_parity(opt_name, options, ALL_SCHEDULES[sched_name], dtype=torch.float64, steps=100, device=device)


def _option_sweep_cases():
    cases = []
    for opt in OPT_NAMES:
        for o in OPTIONS[opt]:
            for name in ("constant", "CyclicLR", "ReduceLROnPlateau"):
                if _sgd_without_momentum_cycled(opt, o, SCHEDULES[name]):
                    name = "CosineAnnealingLR"
                cases.append(pytest.param(opt, o, name, id=f"{opt}-{option_id(o)}-{name}"))
    return cases


@pytest.mark.parametrize("opt_name,options,sched_name", _option_sweep_cases())
def test_parity_fp64_options(opt_name, options, sched_name, device):
    run_parity(opt_name, options, SCHEDULES[sched_name], dtype=torch.float64, steps=100, seed=1, device=device)


def _fp32_cases():
    cases = []
    for opt in OPT_NAMES:
        for o in OPTIONS[opt]:
            for name in ("OneCycleLR", "SequentialLR"):
                if _sgd_without_momentum_cycled(opt, o, SCHEDULES[name]):
                    name = "ExponentialLR"
                cases.append(pytest.param(opt, o, name, id=f"{opt}-{option_id(o)}-{name}"))
    return cases


@pytest.mark.parametrize("opt_name,options,sched_name", _fp32_cases())
def test_parity_fp32(opt_name, options, sched_name, device):
    run_parity(opt_name, options, SCHEDULES[sched_name], dtype=torch.float32, steps=100, seed=2, device=device)


def _lowp_cases():
    cases = []
    for dtype in (torch.bfloat16, torch.float16):
        for opt in OPT_NAMES:
            for o in (OPTIONS[opt][0], OPTIONS[opt][3]):
                for name in ("CyclicLR", "CosineAnnealingWarmRestarts"):
                    if _sgd_without_momentum_cycled(opt, o, SCHEDULES[name]):
                        name = "StepLR"
                    cases.append(pytest.param(opt, o, name, dtype, id=f"{opt}-{option_id(o)}-{name}-{str(dtype)[6:]}"))
    return cases


@pytest.mark.parametrize("opt_name,options,sched_name,dtype", _lowp_cases())
def test_parity_low_precision_resynced(opt_name, options, sched_name, dtype, device):
    run_parity(opt_name, options, SCHEDULES[sched_name], dtype=dtype, steps=40, seed=3, device=device)


@pytest.mark.parametrize("opt_name", OPT_NAMES)
def test_plateau_metric_as_zero_dim_tensor(opt_name, device):
    """report() with a 0-dim tensor on the parameters' device (on a GPU: consumed there, without a sync)."""
    run_parity(opt_name, OPTIONS[opt_name][1], SCHEDULES["ReduceLROnPlateau"], dtype=torch.float64, steps=60,
               metric_as_tensor=True, device=device)


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
def test_momentum_cycling_overrides_constructor_momentum(opt_name, device):
    """torch's CyclicLR/OneCycleLR overwrite SGD's momentum (even when it was 0) and Adam's beta1; the
    overwritten value is what torch's SGD/Adam then use."""
    opts = {"momentum": 0.0} if opt_name == "SGD" else {"betas": (0.5, 0.999)}
    run_parity(opt_name, opts, SCHEDULES["OneCycleLR"], dtype=torch.float64, steps=60, device=device)
    run_parity(opt_name, opts, SCHEDULES["CyclicLR"], dtype=torch.float64, steps=60, device=device)


def test_schedule_families_are_all_exercised():
    """Guard: the sweep above covers every torch scheduler family the contract names."""
    names = {s.split("-")[0] for s in SCHEDULES}
    required = {"constant", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR",
                "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR", "OneCycleLR", "SequentialLR",
                "ChainedScheduler", "LambdaLR", "MultiplicativeLR", "ReduceLROnPlateau"}
    assert required <= names, required - names


# ------------------------------------------------------------------------------------------------
# several param groups
# ------------------------------------------------------------------------------------------------

GROUP_OPTIONS = {
    "SGD": [{"lr": 0.05, "momentum": 0.9}, {"lr": 0.02, "momentum": 0.5, "dampening": 0.1, "weight_decay": 0.1},
            {"lr": 0.1, "nesterov": True, "momentum": 0.8}],
    "Adam": [{"lr": 0.01, "betas": (0.9, 0.99)}, {"lr": 0.003, "amsgrad": True, "weight_decay": 0.1},
             {"lr": 0.02, "eps": 1e-4, "maximize": True}],
    "AdamW": [{"lr": 0.01, "weight_decay": 0.3}, {"lr": 0.005, "betas": (0.7, 0.9), "amsgrad": True},
              {"lr": 0.02, "weight_decay": 0.0}],
}
GROUP_SHAPES = [[(40,), (3, 4)], [(7,)], [(2, 2, 2), (1,)]]


def _groups(params, opts):
    out, i = [], 0
    for shapes, o in zip(GROUP_SHAPES, opts):
        out.append({"params": params[i:i + len(shapes)], **o})
        i += len(shapes)
    return out


def _flat_shapes():
    return [s for g in GROUP_SHAPES for s in g]


@pytest.mark.parametrize("opt_name", OPT_NAMES)
@pytest.mark.parametrize("sched_name", ["constant", "CosineAnnealingLR", "ExponentialLR", "ReduceLROnPlateau", "LambdaLR"])
def test_groups_share_constructor_schedule(opt_name, sched_name, device):
    """Per-group hyperparameters, one schedule for all groups (each group scaled from its own lr)."""
    spec = SCHEDULES[sched_name]
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    gen = torch.Generator().manual_seed(5)
    pa, pb = leaf_pair([v.to(device) for v in make_values(_flat_shapes(), torch.float64, gen)])
    topt = torch_cls(_groups(pb, GROUP_OPTIONS[opt_name]), foreach=False)
    n = 80
    tsched = spec.build_torch(topt, n)
    lopt = lrf_cls(_groups(pa, GROUP_OPTIONS[opt_name]), schedule=spec.build_lrf(n))
    for k in range(n):
        set_grads(pa, pb, [g.to(device) for g in draw_grads(pa, gen, torch.float64)])
        applied = [g["lr"] for g in topt.param_groups]
        topt.step()
        lopt.step()
        if spec.plateau:
            tsched.step(plateau_metric(k))
            lopt.report(plateau_metric(k))
        elif tsched is not None:
            tsched.step()
        what = f"{opt_name} groups {sched_name} step {k}"
        compare_states(lopt, topt, pa, pb, torch.float64, what, extra_state_keys(opt_name))
        assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)


def _per_group_specs():
    return [
        SCHEDULES["CosineAnnealingLR"],
        SCHEDULES["OneCycleLR"],
        SCHEDULES["StepLR"],
    ]


@pytest.mark.parametrize("opt_name", OPT_NAMES)
@pytest.mark.parametrize("constructor_schedule", [False, True])
def test_per_group_schedules(opt_name, constructor_schedule):
    """Each param group carries its own "schedule"; the reference is one torch optimizer + scheduler per
    group (groups are independent, so this is exactly torch's math).  With ``constructor_schedule`` the
    last group has no "schedule" key and uses the constructor's."""
    specs = _per_group_specs()
    n = 70
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    gen = torch.Generator().manual_seed(6)
    pa, pb = leaf_pair(make_values(_flat_shapes(), torch.float64, gen))
    lgroups = _groups(pa, GROUP_OPTIONS[opt_name])
    tgroups = _groups(pb, GROUP_OPTIONS[opt_name])
    topts, tscheds = [], []
    for tg, spec in zip(tgroups, specs):
        o = torch_cls([tg], foreach=False)
        topts.append(o)
        tscheds.append(spec.build_torch(o, n))
    for lg, spec in zip(lgroups[:2], specs[:2]):
        lg["schedule"] = spec.build_lrf(n)
    kwargs = {}
    if constructor_schedule:
        kwargs["schedule"] = specs[2].build_lrf(n)
    else:
        lgroups[2]["schedule"] = specs[2].build_lrf(n)
    lopt = lrf_cls(lgroups, **kwargs)
    for k in range(n):
        set_grads(pa, pb, draw_grads(pa, gen, torch.float64))
        applied = [o.param_groups[0]["lr"] for o in topts]
        for o, s in zip(topts, tscheds):
            o.step()
            s.step()
        lopt.step()
        what = f"{opt_name} per-group schedules step {k}"
        i = 0
        for g, (o, shapes) in enumerate(zip(topts, GROUP_SHAPES)):
            sl = slice(i, i + len(shapes))
            compare_states(lopt, o, pa[sl], pb[sl], torch.float64, f"{what} group {g}", extra_state_keys(opt_name))
            i += len(shapes)
        assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)


@pytest.mark.parametrize("opt_name", ("SGD", "Adam"))
@pytest.mark.parametrize("family", ["CyclicLR", "OneCycleLR"])
def test_cyclic_per_group_base_and_max_lr_lists(opt_name, family):
    """CyclicLR / OneCycleLR with per-group lr (and momentum) lists and momentum cycling, against torch's
    on two groups."""
    n = 60
    gen = torch.Generator().manual_seed(7)
    pa, pb = leaf_pair(make_values([(30,), (5,)], torch.float64, gen))
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    extra = {"momentum": 0.9} if opt_name == "SGD" else {}
    topt = torch_cls([{"params": pb[:1]}, {"params": pb[1:]}], lr=0.01, foreach=False, **extra)
    if family == "CyclicLR":
        kw = dict(base_lr=[0.01, 0.002], max_lr=[0.1, 0.03], step_size_up=4, step_size_down=9, mode="triangular",
                  cycle_momentum=True, base_momentum=0.7, max_momentum=0.9)
    else:
        kw = dict(max_lr=[0.1, 0.03], total_steps=n, pct_start=0.4, cycle_momentum=True, base_momentum=[0.8, 0.7],
                  max_momentum=[0.9, 0.95], div_factor=10.0)
    tsched = getattr(L, family)(topt, **kw)
    lopt = lrf_cls([{"params": pa[:1]}, {"params": pa[1:]}], lr=0.01, schedule=getattr(S, family)(**kw), **extra)
    for k in range(n):
        set_grads(pa, pb, draw_grads(pa, gen, torch.float64))
        applied = [g["lr"] for g in topt.param_groups]
        topt.step()
        tsched.step()
        lopt.step()
        what = f"{opt_name} {family} lists step {k}"
        compare_states(lopt, topt, pa, pb, torch.float64, what, extra_state_keys(opt_name))
        assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)


def test_plateau_min_lr_per_group():
    n = 80
    gen = torch.Generator().manual_seed(8)
    pa, pb = leaf_pair(make_values([(30,), (5,)], torch.float64, gen))
    groups = lambda ps: [{"params": ps[:1], "lr": 0.1}, {"params": ps[1:], "lr": 0.02}]
    topt = torch.optim.Adam(groups(pb), foreach=False)
    kw = dict(factor=0.2, patience=1, min_lr=[1e-3, 1e-2], cooldown=2)
    tsched = L.ReduceLROnPlateau(topt, **kw)
    lopt = lrfused.Adam(groups(pa), schedule=S.ReduceLROnPlateau(**kw))
    for k in range(n):
        set_grads(pa, pb, draw_grads(pa, gen, torch.float64))
        applied = [g["lr"] for g in topt.param_groups]
        topt.step()
        lopt.step()
        tsched.step(plateau_metric(k))
        lopt.report(plateau_metric(k))
        what = f"plateau min_lr lists step {k}"
        compare_states(lopt, topt, pa, pb, torch.float64, what)
        assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)
    # the run must actually have reduced both groups to their floors, or it proved nothing
    assert applied == [1e-3, 1e-2]


# ------------------------------------------------------------------------------------------------
# get_last_lr and the constructor schedule default
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name", OPT_NAMES)
def test_no_schedule_is_constant_lr(opt_name):
    lrf_cls = getattr(lrfused, opt_name)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = lrf_cls([p], lr=0.0123)
    for _ in range(3):
        p.grad = torch.ones(3, dtype=torch.float64)
        opt.step()
        assert opt.get_last_lr() == [0.0123]


@pytest.mark.parametrize("sched_name", [n for n in SCHEDULES if n != "constant"])
def test_get_last_lr_matches_schedule_lr_at(sched_name):
    """get_last_lr() after the k-th step is schedule.lr_at(k, base_lr) (same C++ formula; exact)."""
    spec = SCHEDULES[sched_name]
    n = 50
    sched = spec.build_lrf(n)
    p = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    opt = lrfused.SGD([p], lr=0.07, momentum=0.9, schedule=sched)
    for k in range(n):
        p.grad = torch.full((4,), 0.5, dtype=torch.float64)
        opt.step()
        if spec.plateau:
            # no metric reported: a plateau schedule holds the base lr
            assert opt.get_last_lr() == [0.07]
        else:
            assert opt.get_last_lr() == [sched.lr_at(k, 0.07)], f"{sched_name} step {k}"


# ------------------------------------------------------------------------------------------------
# torch usage patterns beyond the basic loop
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sched_name", ["StepLR", "CosineAnnealingLR", "MultiStepLR", "LinearLR"])
@pytest.mark.parametrize("opt_name", OPT_NAMES)
def test_per_epoch_matches_torch_scheduler_stepped_per_epoch(opt_name, sched_name):
    """schedule.per_epoch(spe) equals torch's scheduler stepped once every spe optimizer steps."""
    spec, spe, n = SCHEDULES[sched_name], 3, 90
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    options = OPTIONS[opt_name][1]
    gen = torch.Generator().manual_seed(9)
    pa, pb = leaf_pair(make_values([(20,), (3, 3)], torch.float64, gen))
    topt = torch_cls(pb, lr=0.05, foreach=False, **options)
    tsched = spec.build_torch(topt, n)
    lopt = lrf_cls(pa, lr=0.05, schedule=spec.build_lrf(n).per_epoch(spe), **options)
    for k in range(n):
        set_grads(pa, pb, draw_grads(pa, gen, torch.float64))
        applied = [g["lr"] for g in topt.param_groups]
        topt.step()
        lopt.step()
        if (k + 1) % spe == 0:
            tsched.step()
        what = f"{opt_name} {sched_name}.per_epoch({spe}) step {k}"
        compare_states(lopt, topt, pa, pb, torch.float64, what, extra_state_keys(opt_name))
        assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)


@pytest.mark.parametrize("opt_name", OPT_NAMES)
def test_plateau_eps_blocks_tiny_reductions(opt_name):
    """At lr ~ 1e-7, ReduceLROnPlateau's eps (1e-8) stops a reduction once lr - new_lr <= eps."""
    spec = ScheduleSpec(
        "ReduceLROnPlateau-tiny-lr",
        lambda o, n: L.ReduceLROnPlateau(o, factor=0.5, patience=0, eps=1e-8),
        lambda n: S.ReduceLROnPlateau(factor=0.5, patience=0, eps=1e-8),
        plateau=True, metric=lambda k: 1.0, max_lr=1e-7,
    )
    _, topt, _, _ = run_parity(opt_name, OPTIONS[opt_name][1], spec, dtype=torch.float64, steps=12, lr=1e-7)
    assert topt.param_groups[0]["lr"] == 1e-7 / 8  # 1e-7 -> 5e-8 -> 2.5e-8 -> 1.25e-8, then blocked


@pytest.mark.parametrize("opt_name,options,changes", [
    ("SGD", {"momentum": 0.9}, {"lr": 0.01, "weight_decay": 0.1, "momentum": 0.5, "dampening": 0.2}),
    ("SGD", {}, {"lr": 0.2, "maximize": True}),
    ("Adam", {}, {"lr": 0.003, "betas": (0.5, 0.9), "eps": 1e-3, "weight_decay": 0.05}),
    ("AdamW", {"amsgrad": True}, {"lr": 0.02, "weight_decay": 0.3, "betas": (0.95, 0.99)}),
], ids=["SGD-momentum", "SGD-plain", "Adam", "AdamW"])
def test_hyperparameters_edited_between_steps_take_effect(opt_name, options, changes):
    """Without a schedule, editing param_groups[i][...] between steps (manual lr decay, changing weight
    decay...) changes the update exactly as it does in torch."""
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    gen = torch.Generator().manual_seed(10)
    pa, pb = leaf_pair(make_values([(25,), (4,)], torch.float64, gen))
    topt = torch_cls(pb, lr=0.05, foreach=False, **options)
    lopt = lrf_cls(pa, lr=0.05, **options)
    for k in range(16):
        if k in (5, 11):
            for key, value in changes.items():
                v = value if k == 5 else (value * 0.5 if isinstance(value, float) else value)
                topt.param_groups[0][key] = v
                lopt.param_groups[0][key] = v
        set_grads(pa, pb, draw_grads(pa, gen, torch.float64))
        topt.step()
        lopt.step()
        what = f"{opt_name} edited hyperparameters step {k}"
        compare_states(lopt, topt, pa, pb, torch.float64, what, extra_state_keys(opt_name))
        assert lopt.get_last_lr() == [topt.param_groups[0]["lr"]], what


@pytest.mark.parametrize("opt_name", OPT_NAMES)
def test_step_with_closure(opt_name):
    """step(closure) re-evaluates the loss with grad enabled, uses the grads it produced, returns it."""
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(16, 5, dtype=torch.float64, generator=gen)
    pa, pb = leaf_pair(make_values([(5,)], torch.float64, gen))
    topt = torch_cls(pb, lr=0.05, foreach=False)
    lopt = lrf_cls(pa, lr=0.05)

    def closure_for(opt, w):
        def closure():
            opt.zero_grad()
            loss = ((x @ w) ** 2).mean()
            loss.backward()
            return loss
        return closure

    with torch.no_grad():
        for k in range(8):
            lt = topt.step(closure_for(topt, pb[0]))
            ll = lopt.step(closure_for(lopt, pa[0]))
            assert isinstance(ll, torch.Tensor) and ll.requires_grad
            torch.testing.assert_close(ll.detach(), lt.detach(), rtol=1e-12, atol=1e-12)
            compare_states(lopt, topt, pa, pb, torch.float64, f"closure step {k}", extra_state_keys(opt_name))


@pytest.mark.parametrize("opt_name", OPT_NAMES)
def test_plateau_in_one_group_and_a_step_schedule_in_another(opt_name):
    """report() drives only the group whose schedule is ReduceLROnPlateau; the other group follows its
    own schedule.  Reference: one torch optimizer + scheduler per group."""
    n = 60
    lrf_cls, torch_cls = getattr(lrfused, opt_name), getattr(torch.optim, opt_name)
    gen = torch.Generator().manual_seed(12)
    pa, pb = leaf_pair(make_values([(20,), (3, 3)], torch.float64, gen))
    plateau, steps = SCHEDULES["ReduceLROnPlateau"], SCHEDULES["StepLR"]
    t0 = torch_cls([pb[0]], lr=0.05, foreach=False)
    t1 = torch_cls([pb[1]], lr=0.02, foreach=False)
    s0, s1 = plateau.build_torch(t0, n), steps.build_torch(t1, n)
    lopt = lrf_cls([{"params": [pa[0]], "lr": 0.05, "schedule": plateau.build_lrf(n)},
                    {"params": [pa[1]], "lr": 0.02, "schedule": steps.build_lrf(n)}])
    for k in range(n):
        set_grads(pa, pb, draw_grads(pa, gen, torch.float64))
        applied = [t0.param_groups[0]["lr"], t1.param_groups[0]["lr"]]
        t0.step()
        t1.step()
        lopt.step()
        s0.step(plateau.metric(k))
        s1.step()
        lopt.report(plateau.metric(k))
        what = f"{opt_name} plateau+StepLR groups step {k}"
        compare_states(lopt, t0, pa[:1], pb[:1], torch.float64, what + " group 0", extra_state_keys(opt_name))
        compare_states(lopt, t1, pa[1:], pb[1:], torch.float64, what + " group 1", extra_state_keys(opt_name))
        assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)
    assert applied[0] < 0.05, "the plateau group must have been reduced"

