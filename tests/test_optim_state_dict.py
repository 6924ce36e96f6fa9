"""state_dict / load_state_dict, checkpoints, pickling and deepcopy."""
import copy
import io
import pickle

import pytest
import torch

import lrfused
from lrfused import schedules as S

from optim_helpers import (
    OPTIONS,
    SCHEDULES,
    assert_lr_close,
    compare_states,
    extra_state_keys,
    lrf_state,
    plateau_metric,
    tensor_state,
)

SHAPES = [(31,), (4, 5), (1,)]
OPT_CASES = [
    ("SGD", {"momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {}),
    ("Adam", {"weight_decay": 0.01}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {"betas": (0.8, 0.99)}),
    ("AdamW", {"amsgrad": True, "maximize": True}),
]
OPT_IDS = [f"{n}-{i}" for i, (n, _) in enumerate(OPT_CASES)]


def _values(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, dtype=torch.float64, generator=g).to(dtype) for s in SHAPES]


def _grads(k, params, seed=100):
    g = torch.Generator().manual_seed(seed * 100003 + k)
    return [torch.randn(p.shape, dtype=torch.float64, generator=g).to(p.device, p.dtype) for p in params]


def _leaves(values):
    return [v.clone().requires_grad_(True) for v in values]


def _step(opt, params, k, spec=None):
    for p, g in zip(params, _grads(k, params)):
        p.grad = g
    opt.step()
    if spec is not None and spec.plateau:
        opt.report(spec.metric(k))


def _assert_bit_identical(opt_a, params_a, opt_b, params_b, what):
    for i, (a, b) in enumerate(zip(params_a, params_b)):
        assert torch.equal(a.detach(), b.detach()), f"{what}: param {i} differs"
        sa, sb = tensor_state(lrf_state(opt_a, a)), tensor_state(lrf_state(opt_b, b))
        assert set(sa) == set(sb), f"{what}: param {i} state keys {sorted(sa)} vs {sorted(sb)}"
        for key in sa:
            assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), f"{what}: param {i} {key} differs"
    assert opt_a.get_last_lr() == opt_b.get_last_lr(), f"{what}: lr {opt_a.get_last_lr()} vs {opt_b.get_last_lr()}"


def _torch_run(opt_name, options, params, steps, start=0):
    opt = getattr(torch.optim, opt_name)(params, lr=0.03, foreach=False, **options)
    for k in range(start, start + steps):
        for p, g in zip(params, _grads(k, params)):
            p.grad = g
        opt.step()
    return opt


# ------------------------------------------------------------------------------------------------
# format
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_state_dict_uses_torch_keys_and_shapes(opt_name, options):
    vals = _values()
    pa, pb = _leaves(vals), _leaves(vals)
    lopt = getattr(lrfused, opt_name)(pa, lr=0.03, schedule=S.StepLR(step_size=2), **options)
    topt = _torch_run(opt_name, options, pb, 3)
    for k in range(3):
        _step(lopt, pa, k)
    sd, tsd = lopt.state_dict(), topt.state_dict()
    assert set(sd) >= {"state", "param_groups"}
    assert set(tsd["state"]) <= set(sd["state"]) <= {0, 1, 2}
    for i in range(3):
        ts = {k: v for k, v in tsd["state"].get(i, {}).items() if v is not None}
        ls = {k: v for k, v in sd["state"].get(i, {}).items() if v is not None}
        assert set(ts) <= set(ls) and set(ls) - set(ts) <= set(extra_state_keys(opt_name)), (sorted(ls), sorted(ts))
        for key, tv in ts.items():
            lv = ls[key]
            assert isinstance(lv, torch.Tensor), key
            assert lv.shape == tv.shape and lv.dtype == tv.dtype and lv.device == tv.device, (key, lv, tv)
        if "step" in ls:
            assert ls["step"].dim() == 0 and ls["step"].dtype == torch.float32
            assert ls["step"].item() == 3.0
    assert len(sd["param_groups"]) == 1
    lg, tg = sd["param_groups"][0], tsd["param_groups"][0]
    assert lg["params"] == tg["params"] == [0, 1, 2]
    for key in ("momentum", "dampening", "nesterov", "betas", "eps", "amsgrad", "weight_decay", "maximize"):
        if key in tg:
            assert lg[key] == tg[key], key


def test_state_dict_is_loadable_by_torch_load_weights_only():
    """The usual checkpoint path, torch.save + torch.load (weights_only=True is torch's default):
    schedule state must survive it (so it must be made of tensors and plain Python values)."""
    vals = _values()
    pa = _leaves(vals)
    spec = SCHEDULES["ReduceLROnPlateau"]
    opt = lrfused.AdamW(pa, lr=0.03, schedule=spec.build_lrf(40))
    for k in range(20):
        _step(opt, pa, k, spec)
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    sd = torch.load(buf, weights_only=True)
    pb = [p.detach().clone().requires_grad_(True) for p in pa]
    opt2 = lrfused.AdamW(pb, lr=0.03, schedule=spec.build_lrf(40))
    opt2.load_state_dict(sd)
    for k in range(20, 30):
        _step(opt, pa, k, spec)
        _step(opt2, pb, k, spec)
    _assert_bit_identical(opt, pa, opt2, pb, "torch.save/torch.load(weights_only=True) resume")


# ------------------------------------------------------------------------------------------------
# lrfused -> lrfused, mid-schedule: bit for bit
# ------------------------------------------------------------------------------------------------

RESUME_SCHEDULES = ["constant", "CosineAnnealingLR", "OneCycleLR", "CyclicLR", "SequentialLR", "LambdaLR",
                    "CosineAnnealingWarmRestarts", "ReduceLROnPlateau", "ReduceLROnPlateau-max-abs"]


@pytest.mark.parametrize("sched_name", RESUME_SCHEDULES)
@pytest.mark.parametrize("opt_name,options", [OPT_CASES[0], OPT_CASES[3], OPT_CASES[4]], ids=["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("via", ["state_dict", "torch.save"])
def test_resume_mid_schedule_is_bit_identical(sched_name, opt_name, options, via):
    spec = SCHEDULES[sched_name]
    n, cut = 60, 23  # cut inside OneCycle's warmup/anneal, inside a plateau's patience window
    cls = getattr(lrfused, opt_name)
    vals = _values(1)
    p_full = _leaves(vals)
    full = cls(p_full, lr=0.03, schedule=spec.build_lrf(n), **options)
    p_first = _leaves(vals)
    first = cls(p_first, lr=0.03, schedule=spec.build_lrf(n), **options)
    for k in range(cut):
        _step(full, p_full, k, spec)
        _step(first, p_first, k, spec)
    sd = first.state_dict()
    if via == "torch.save":
        buf = io.BytesIO()
        torch.save(sd, buf)
        buf.seek(0)
        sd = torch.load(buf, weights_only=False)
    else:
        sd = copy.deepcopy(sd)
    p_resumed = [p.detach().clone().requires_grad_(True) for p in p_first]
    del first, p_first
    resumed = cls(p_resumed, lr=0.03, schedule=spec.build_lrf(n), **options)
    resumed.load_state_dict(sd)
    for k in range(cut, n):
        _step(full, p_full, k, spec)
        _step(resumed, p_resumed, k, spec)
        _assert_bit_identical(full, p_full, resumed, p_resumed, f"{opt_name} {sched_name} resumed at {cut}, step {k}")


def test_resume_keeps_plateau_counters():
    """Cut exactly where ReduceLROnPlateau has num_bad > 0 and then a cooldown running: if either counter
    were lost, the resumed run would reduce the lr at a different step."""
    spec = SCHEDULES["ReduceLROnPlateau"]  # patience 2, cooldown 1
    vals = _values(2)
    for cut in (16, 17, 18, 19, 20, 21):
        pa, pb = _leaves(vals), _leaves(vals)
        a = lrfused.SGD(pa, lr=0.1, momentum=0.9, schedule=spec.build_lrf(40))
        b = lrfused.SGD(pb, lr=0.1, momentum=0.9, schedule=spec.build_lrf(40))
        for k in range(cut):
            _step(a, pa, k, spec)
            _step(b, pb, k, spec)
        sd = copy.deepcopy(b.state_dict())
        pc = [p.detach().clone().requires_grad_(True) for p in pb]
        c = lrfused.SGD(pc, lr=0.1, momentum=0.9, schedule=spec.build_lrf(40))
        c.load_state_dict(sd)
        lrs_a, lrs_c = [], []
        for k in range(cut, 40):
            _step(a, pa, k, spec)
            _step(c, pc, k, spec)
            lrs_a.append(a.get_last_lr()[0])
            lrs_c.append(c.get_last_lr()[0])
        assert lrs_a == lrs_c, f"cut {cut}"
        assert len(set(lrs_a)) > 1, "the window must contain an lr reduction"


# ------------------------------------------------------------------------------------------------
# torch <-> lrfused
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_torch_state_dict_loads_into_lrfused(opt_name, options, device):
    """A torch optimizer's state_dict loaded into the lrfused namesake continues exactly as torch does
    (Adam's bias correction continues from the loaded step)."""
    vals = [v.to(device) for v in _values(3)]
    pt = _leaves(vals)
    topt = _torch_run(opt_name, options, pt, 7)
    sd = copy.deepcopy(topt.state_dict())
    pl = [p.detach().clone().requires_grad_(True) for p in pt]
    lopt = getattr(lrfused, opt_name)(pl, lr=0.03, **options)
    lopt.load_state_dict(sd)
    for k in range(7, 20):
        for a, b, g in zip(pl, pt, _grads(k, pl)):
            a.grad = g.clone()
            b.grad = g.clone()
        topt.step()
        lopt.step()
        compare_states(lopt, topt, pl, pt, torch.float64, f"torch->lrfused step {k}", extra_state_keys(opt_name))


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_lrfused_state_dict_loads_into_torch(opt_name, options):
    vals = _values(4)
    pl = _leaves(vals)
    lopt = getattr(lrfused, opt_name)(pl, lr=0.03, **options)
    for k in range(7):
        _step(lopt, pl, k)
    sd = copy.deepcopy(lopt.state_dict())
    pt = [p.detach().clone().requires_grad_(True) for p in pl]
    topt = getattr(torch.optim, opt_name)(pt, lr=0.03, foreach=False, **options)
    topt.load_state_dict(sd)
    for k in range(7, 20):
        for a, b, g in zip(pl, pt, _grads(k, pl)):
            a.grad = g.clone()
            b.grad = g.clone()
        topt.step()
        lopt.step()
        compare_states(lopt, topt, pl, pt, torch.float64, f"lrfused->torch step {k}", extra_state_keys(opt_name))


@pytest.mark.parametrize("opt_name,options", [OPT_CASES[0], OPT_CASES[3]], ids=["SGD", "Adam"])
def test_round_trip_torch_lrfused_torch(opt_name, options):
    vals = _values(5)
    pt = _leaves(vals)
    ref = _leaves(vals)
    topt = _torch_run(opt_name, options, pt, 5)
    tref = _torch_run(opt_name, options, ref, 5)
    pl = [p.detach().clone().requires_grad_(True) for p in pt]
    lopt = getattr(lrfused, opt_name)(pl, lr=0.03, **options)
    lopt.load_state_dict(copy.deepcopy(topt.state_dict()))
    for k in range(5, 10):
        _step(lopt, pl, k)
        for p, g in zip(ref, _grads(k, ref)):
            p.grad = g
        tref.step()
    pt2 = [p.detach().clone().requires_grad_(True) for p in pl]
    topt2 = getattr(torch.optim, opt_name)(pt2, lr=0.03, foreach=False, **options)
    topt2.load_state_dict(copy.deepcopy(lopt.state_dict()))
    for k in range(10, 15):
        for a, b, g in zip(pt2, ref, _grads(k, ref)):
            a.grad = g.clone()
            b.grad = g.clone()
        topt2.step()
        tref.step()
    # (torch's SGD keeps lrfused's "step" key as loaded, unused)
    compare_states(topt2, tref, pt2, ref, torch.float64, "torch->lrfused->torch", extra_state_keys(opt_name))


# ------------------------------------------------------------------------------------------------
# pickling, deepcopy
# ------------------------------------------------------------------------------------------------

PICKLABLE = {  # built lazily, inside the test
    "StepLR": lambda: S.StepLR(step_size=3, gamma=0.5),
    "MultiStepLR": lambda: S.MultiStepLR(milestones=[2, 5, 5], gamma=0.3),
    "ConstantLR": lambda: S.ConstantLR(factor=0.25, total_iters=4),
    "LinearLR": lambda: S.LinearLR(start_factor=0.2, total_iters=7),
    "ExponentialLR": lambda: S.ExponentialLR(gamma=0.9),
    "PolynomialLR": lambda: S.PolynomialLR(total_iters=9, power=0.5),
    "CosineAnnealingLR": lambda: S.CosineAnnealingLR(T_max=11, eta_min=0.01),
    "CosineAnnealingWarmRestarts": lambda: S.CosineAnnealingWarmRestarts(T_0=3, T_mult=2),
    "CyclicLR": lambda: S.CyclicLR(base_lr=0.01, max_lr=0.1, step_size_up=4, mode="triangular2"),
    "OneCycleLR": lambda: S.OneCycleLR(max_lr=0.1, total_steps=30),
    "SequentialLR": lambda: S.SequentialLR([S.LinearLR(start_factor=0.1, total_iters=5), S.ExponentialLR(gamma=0.9)], milestones=[5]),
    "ChainedScheduler": lambda: S.ChainedScheduler([S.StepLR(step_size=4), S.ExponentialLR(gamma=0.95)]),
    "ReduceLROnPlateau": lambda: S.ReduceLROnPlateau(factor=0.5, patience=3),
    "per_epoch": lambda: S.CosineAnnealingLR(T_max=5).per_epoch(3),
}


@pytest.mark.parametrize("name", list(PICKLABLE))
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_schedule_pickle_and_deepcopy(name, how):
    sched = PICKLABLE[name]()
    clone = pickle.loads(pickle.dumps(sched)) if how == "pickle" else copy.deepcopy(sched)
    assert type(clone) is type(sched)
    a, b = sched.lrs(30, 0.1), clone.lrs(30, 0.1)
    assert a.dtype == torch.float64 and a.shape == (30,)
    assert torch.equal(a, b)


def test_lambda_schedule_pickles_by_value():
    """LambdaLR is tabulated once on the host, so even a lambda (not picklable itself) must not stop the
    schedule from pickling."""
    sched = S.LambdaLR(lambda k: 0.9 ** k, total_steps=20)
    clone = pickle.loads(pickle.dumps(sched))
    assert torch.equal(sched.lrs(25, 0.5), clone.lrs(25, 0.5))


@pytest.mark.parametrize("opt_name,options", [OPT_CASES[0], OPT_CASES[3], OPT_CASES[5]], ids=["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_optimizer_pickle_and_deepcopy_mid_schedule(opt_name, options, how):
    spec = SCHEDULES["ReduceLROnPlateau"]
    vals = _values(6)
    pa = _leaves(vals)
    opt = getattr(lrfused, opt_name)(pa, lr=0.05, schedule=spec.build_lrf(40), **options)
    for k in range(18):
        _step(opt, pa, k, spec)
    clone = pickle.loads(pickle.dumps(opt)) if how == "pickle" else copy.deepcopy(opt)
    pc = [p for g in clone.param_groups for p in g["params"]]
    assert len(pc) == len(pa) and all(c is not a for c, a in zip(pc, pa))
    for k in range(18, 35):
        _step(opt, pa, k, spec)
        _step(clone, pc, k, spec)
        _assert_bit_identical(opt, pa, clone, pc, f"{how} step {k}")


# (not SGD: torch's SGD state keeps no step count, so a torch SGD checkpoint carries no schedule position)
@pytest.mark.parametrize("sched_name", [
    "CosineAnnealingLR",
    "StepLR",
    "LinearLR",
    "OneCycleLR",  # absolute lrs: the base does not enter
])
@pytest.mark.parametrize("opt_name,options", [OPT_CASES[2], OPT_CASES[5]], ids=["Adam", "AdamW"])
def test_torch_checkpoint_mid_schedule_loads_into_lrfused(opt_name, options, sched_name):
    """Switching a run from torch to lrfused mid-schedule: a torch optimizer's state_dict (whose group
    "lr" is the *scheduled* lr, the base kept as "initial_lr") loaded into the lrfused namesake built with
    the equivalent schedule continues exactly as torch's optimizer + scheduler continue (README: the
    schedule position is taken from the parameters' step count)."""
    spec = SCHEDULES[sched_name]
    n, cut = 40, 13
    vals = _values(7)
    pt = _leaves(vals)
    topt = getattr(torch.optim, opt_name)(pt, lr=0.03, foreach=False, **options)
    tsched = spec.build_torch(topt, n)
    for k in range(cut):
        for p, g in zip(pt, _grads(k, pt)):
            p.grad = g
        topt.step()
        tsched.step()
    pl = [p.detach().clone().requires_grad_(True) for p in pt]
    lopt = getattr(lrfused, opt_name)(pl, lr=0.03, schedule=spec.build_lrf(n), **options)
    lopt.load_state_dict(copy.deepcopy(topt.state_dict()))
    for k in range(cut, n):
        for a, b, g in zip(pl, pt, _grads(k, pl)):
            a.grad = g.clone()
            b.grad = g.clone()
        applied = [g["lr"] for g in topt.param_groups]
        topt.step()
        tsched.step()
        lopt.step()
        what = f"torch checkpoint at {cut} -> lrfused, {sched_name}, step {k}"
        compare_states(lopt, topt, pl, pt, torch.float64, what, extra_state_keys(opt_name))
        assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)


@pytest.mark.parametrize("sched_name", ["OneCycleLR", "ReduceLROnPlateau"])
def test_rollback_to_an_earlier_checkpoint(sched_name):
    """Loading an earlier checkpoint into an optimizer that has moved on (e.g. 'restore the best')
    continues exactly like the run that stopped at that checkpoint."""
    spec = SCHEDULES[sched_name]
    n = 50
    vals = _values(8)
    pa = _leaves(vals)
    a = lrfused.Adam(pa, lr=0.03, schedule=spec.build_lrf(n))
    for k in range(12):
        _step(a, pa, k, spec)
    ckpt = copy.deepcopy(a.state_dict())
    saved = [p.detach().clone() for p in pa]
    pb = [p.detach().clone().requires_grad_(True) for p in pa]
    b = lrfused.Adam(pb, lr=0.03, schedule=spec.build_lrf(n))
    b.load_state_dict(copy.deepcopy(ckpt))
    for k in range(12, 30):  # a moves on ...
        _step(a, pa, k, spec)
    with torch.no_grad():  # ... and is rolled back
        for p, s in zip(pa, saved):
            p.copy_(s)
    a.load_state_dict(ckpt)
    for k in range(12, n):
        _step(a, pa, k, spec)
        _step(b, pb, k, spec)
        _assert_bit_identical(a, pa, b, pb, f"rollback {sched_name} step {k}")


@pytest.mark.parametrize("opt_name,options", [OPT_CASES[0], OPT_CASES[4]], ids=["SGD", "AdamW"])
def test_resume_after_amp_skipped_steps(opt_name, options):
    """After AMP-skipped steps the schedule position (k) lags the number of step() calls; a checkpoint
    taken then resumes bit for bit, up to and including OneCycleLR's last allowed step."""
    total, skips = 30, {2, 3, 9}
    cls = getattr(lrfused, opt_name)
    vals = _values(9)

    def run(params, opt, calls):
        for c in calls:
            for p, g in zip(params, _grads(c, params)):
                p.grad = g
            opt.step(found_inf=torch.tensor(float(c in skips)))

    calls = range(total + 1 + len(skips))  # exactly total + 1 real steps: k = 0 .. total
    pa, pb = _leaves(vals), _leaves(vals)
    a = cls(pa, lr=0.05, schedule=S.OneCycleLR(max_lr=0.1, total_steps=total), **options)
    b = cls(pb, lr=0.05, schedule=S.OneCycleLR(max_lr=0.1, total_steps=total), **options)
    run(pa, a, calls[:12])
    run(pb, b, calls[:12])
    pc = [p.detach().clone().requires_grad_(True) for p in pb]
    c = cls(pc, lr=0.05, schedule=S.OneCycleLR(max_lr=0.1, total_steps=total), **options)
    c.load_state_dict(copy.deepcopy(b.state_dict()))
    for i in calls[12:]:
        run(pa, a, [i])
        run(pc, c, [i])
        if i not in skips:
            _assert_bit_identical(a, pa, c, pc, f"resume after skips, call {i}")
    for o, ps in ((a, pa), (c, pc)):
        with pytest.raises(ValueError, match=r"(?i)(total.steps|past|exceed)"):
            run(ps, o, [10 ** 6])
