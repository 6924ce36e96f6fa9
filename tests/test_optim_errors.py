"""Misuse is rejected with a message that names the problem, and leaves everything bit-identical;
edge-case numerics behave as torch's."""
import copy
import math

import pytest
import torch

import lrfused
from lrfused import schedules as S
from lrfused.testing import TOLERANCE, assert_close

from optim_helpers import (
    SCHEDULES,
    assert_bitwise_equal_snapshot,
    compare_states,
    extra_state_keys,
    leaf_pair,
    lrf_state,
    make_values,
    snapshot,
)

ERRORS = (ValueError, TypeError, RuntimeError)
OPT_CASES = [
    ("SGD", {"momentum": 0.9}),
    ("Adam", {"amsgrad": True}),
    ("AdamW", {}),
]
OPT_IDS = [c[0] for c in OPT_CASES]


def _trained(opt_name, options, steps=3, dtype=torch.float32, schedule=None):
    """An lrfused optimizer with state (a few steps taken) and its parameters."""
    gen = torch.Generator().manual_seed(41)
    params = [v.requires_grad_(True) for v in make_values([(10,), (2, 3)], dtype, gen)]
    opt = getattr(lrfused, opt_name)(params, lr=0.05, schedule=schedule, **options)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(dtype)
        opt.step()
    return opt, params


def _fresh_grads(params, seed=42):
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)


def _assert_still_works(opt, params, twin, twin_params, what):
    """After a rejected call the optimizer continues exactly like an untouched twin."""
    for k in range(2):
        _fresh_grads(params, 50 + k)
        _fresh_grads(twin_params, 50 + k)
        opt.step()
        twin.step()
    for i, (a, b) in enumerate(zip(params, twin_params)):
        assert torch.equal(a.detach(), b.detach()), f"{what}: param {i} diverged from the untouched twin"
    assert opt.get_last_lr() == twin.get_last_lr(), what


# ------------------------------------------------------------------------------------------------
# bad gradients and parameters
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_sparse_gradient_is_rejected(opt_name, options):
    opt, params = _trained(opt_name, options)
    twin, twin_params = _trained(opt_name, options)
    snap = snapshot(params, opt, lrf_state)
    _fresh_grads(params)
    params[0].grad = torch.sparse_coo_tensor([[1, 4]], [1.0, -2.0], (10,), check_invariants=True)
    with pytest.raises(ERRORS, match=r"(?i)sparse"):
        opt.step()
    assert_bitwise_equal_snapshot(params, opt, snap, lrf_state, "after a sparse grad")
    _assert_still_works(opt, params, twin, twin_params, "after a sparse grad")


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
@pytest.mark.parametrize("int_dtype", [torch.int64, torch.int32, torch.uint8])
def test_integer_parameters_are_rejected(opt_name, options, int_dtype):
    p = torch.arange(6, dtype=int_dtype)
    before = p.clone()
    with pytest.raises(ERRORS, match=r"(?i)(floating|dtype|integer|int)"):
        opt = getattr(lrfused, opt_name)([p], lr=0.1, **options)
        p.grad = torch.ones(6, dtype=int_dtype)
        opt.step()
    assert torch.equal(p, before)


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
@pytest.mark.parametrize("bad", ["shape", "numel", "dtype"])
def test_gradient_not_matching_its_parameter_is_rejected(opt_name, options, bad):
    opt, params = _trained(opt_name, options)
    twin, twin_params = _trained(opt_name, options)
    snap = snapshot(params, opt, lrf_state)
    _fresh_grads(params)
    g = params[1].grad
    # the message must say what differs: by name, or by showing the grad's and the param's values
    if bad == "shape":  # same numel, different shape
        g.data = torch.randn(3, 2)
        pattern = r"(?i)(shape|size|\[3, 2\].*\[2, 3\])"
    elif bad == "numel":
        g.data = torch.randn(7)
        pattern = r"(?i)(shape|size|numel|\[7\].*\[2, 3\])"
    else:
        g.data = torch.randn(2, 3, dtype=torch.float64)
        pattern = r"(?i)(dtype|(double|float64).*(float\b|float32))"
    with pytest.raises(ERRORS, match=pattern):
        opt.step()
    assert_bitwise_equal_snapshot(params, opt, snap, lrf_state, f"after a grad with a different {bad}")
    params[1].grad = None
    _assert_still_works(opt, params, twin, twin_params, f"after a grad with a different {bad}")


# ------------------------------------------------------------------------------------------------
# bad hyperparameters
# ------------------------------------------------------------------------------------------------

BAD_HYPER = [
    ("SGD", {"lr": -0.1}, r"(?i)(\blr\b|learning rate)"),
    ("SGD", {"lr": float("nan")}, r"(?i)(\blr\b|learning rate)"),
    ("SGD", {"weight_decay": -1e-3}, r"(?i)weight.decay"),
    ("SGD", {"weight_decay": float("nan")}, r"(?i)weight.decay"),
    ("SGD", {"momentum": -0.5}, r"(?i)momentum"),
    ("SGD", {"nesterov": True}, r"(?i)nesterov"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, r"(?i)(nesterov|dampening)"),
]
for _name in ("Adam", "AdamW"):
    BAD_HYPER += [
        (_name, {"lr": -1e-3}, r"(?i)(\blr\b|learning rate)"),
        (_name, {"lr": float("nan")}, r"(?i)(\blr\b|learning rate)"),
        (_name, {"eps": -1e-8}, r"(?i)eps"),
        (_name, {"eps": float("nan")}, r"(?i)eps"),
        (_name, {"weight_decay": -0.01}, r"(?i)weight.decay"),
        (_name, {"weight_decay": float("nan")}, r"(?i)weight.decay"),
        (_name, {"betas": (1.0, 0.999)}, r"(?i)beta"),
        (_name, {"betas": (0.9, 1.0)}, r"(?i)beta"),
        (_name, {"betas": (-0.1, 0.999)}, r"(?i)beta"),
        (_name, {"betas": (0.9, 1.5)}, r"(?i)beta"),
        (_name, {"betas": (float("nan"), 0.999)}, r"(?i)beta"),
        (_name, {"betas": (0.9, float("nan"))}, r"(?i)beta"),
    ]


@pytest.mark.parametrize("opt_name,kwargs,pattern", BAD_HYPER,
                         ids=[f"{n}-{','.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, _ in BAD_HYPER])
def test_bad_hyperparameters_are_rejected_at_construction(opt_name, kwargs, pattern):
    p = torch.randn(5, requires_grad=True)
    before = p.detach().clone()
    kw = {"lr": 0.01, **kwargs}
    with pytest.raises(ValueError, match=pattern):
        getattr(lrfused, opt_name)([p], **kw)
    assert torch.equal(p.detach(), before)


def test_bad_schedule_argument_is_a_type_error():
    p = torch.randn(5, requires_grad=True)
    with pytest.raises(TypeError, match=r"(?i)schedule"):
        lrfused.Adam([p], schedule=torch.optim.lr_scheduler.StepLR)
    with pytest.raises(TypeError, match=r"(?i)schedule"):
        lrfused.SGD([{"params": [p], "schedule": 0.5}], lr=0.1)


# ------------------------------------------------------------------------------------------------
# report() and OneCycleLR bounds
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [None, "CosineAnnealingLR"])
def test_report_without_a_plateau_schedule(schedule):
    spec = SCHEDULES[schedule] if schedule else None
    opt, params = _trained("Adam", {}, schedule=spec.build_lrf(20) if spec else None)
    twin, twin_params = _trained("Adam", {}, schedule=spec.build_lrf(20) if spec else None)
    snap = snapshot(params, opt, lrf_state)
    with pytest.raises(ERRORS, match=r"(?i)(plateau|report)"):
        opt.report(0.5)
    assert_bitwise_equal_snapshot(params, opt, snap, lrf_state, "after report() without plateau")
    _assert_still_works(opt, params, twin, twin_params, "after report() without plateau")


def test_nan_metric_is_rejected_and_plateau_state_kept():
    spec = SCHEDULES["ReduceLROnPlateau"]
    opt, params = _trained("SGD", {"momentum": 0.9}, steps=0, schedule=spec.build_lrf(40))
    twin, twin_params = _trained("SGD", {"momentum": 0.9}, steps=0, schedule=spec.build_lrf(40))
    for k in range(17):  # into the stalled stretch: num_bad > 0
        for o, ps in ((opt, params), (twin, twin_params)):
            _fresh_grads(ps, 60 + k)
            o.step()
            o.report(spec.metric(k))
    # (a NaN inside a 0-dim tensor metric cannot be seen without a host sync, which API.md rules out;
    # a Python float NaN can)
    with pytest.raises(ValueError, match=r"(?i)(nan|finite|metric)"):
        opt.report(float("nan"))
    for k in range(17, 40):
        for o, ps in ((opt, params), (twin, twin_params)):
            _fresh_grads(ps, 60 + k)
            o.step()
            o.report(spec.metric(k))
        assert opt.get_last_lr() == twin.get_last_lr(), f"step {k}: plateau state changed by the rejected NaN"
    _assert_still_works(opt, params, twin, twin_params, "after a NaN metric")


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_onecycle_stepped_past_total_steps(opt_name, options):
    total = 10
    sched = S.OneCycleLR(max_lr=0.1, total_steps=total)
    opt, params = _trained(opt_name, options, steps=total + 1, schedule=sched)  # k = 0 .. total: allowed
    assert opt.get_last_lr() == [sched.lr_at(total, 0.05)]
    snap = snapshot(params, opt, lrf_state)
    _fresh_grads(params)
    with pytest.raises(ValueError, match=r"(?i)(total.steps|total_steps|past|exceed)"):
        opt.step()
    assert_bitwise_equal_snapshot(params, opt, snap, lrf_state, "after stepping OneCycleLR past total_steps")


def test_torch_onecycle_raises_at_the_same_step():
    """Guard for the test above: torch's own OneCycleLR allows lr for k = 0 .. total, then raises."""
    p = torch.zeros(2, requires_grad=True)
    o = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    s = torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=10)
    for _ in range(10):
        o.step()
        s.step()
    o.step()  # the 11th step runs at k = 10 = total_steps
    with pytest.raises(ValueError, match="total steps"):
        s.step()


# ------------------------------------------------------------------------------------------------
# load_state_dict misuse
# ------------------------------------------------------------------------------------------------


def _donor_state_dict(opt_name, options, shapes=((10,), (2, 3))):
    gen = torch.Generator().manual_seed(43)
    ps = [v.requires_grad_(True) for v in make_values(shapes, torch.float32, gen)]
    o = getattr(lrfused, opt_name)(ps, lr=0.05, **options)
    for _ in range(2):
        for p in ps:
            p.grad = torch.randn(p.shape, generator=gen)
        o.step()
    return copy.deepcopy(o.state_dict())


def _check_load_rejected(opt_name, options, sd, pattern, what):
    opt, params = _trained(opt_name, options)
    twin, twin_params = _trained(opt_name, options)
    snap = snapshot(params, opt, lrf_state)
    groups_before = copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    with pytest.raises(ERRORS, match=pattern):
        opt.load_state_dict(sd)
    assert_bitwise_equal_snapshot(params, opt, snap, lrf_state, what)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == groups_before, what
    _assert_still_works(opt, params, twin, twin_params, what)


@pytest.mark.parametrize("src,dst", [
    ("SGD", "Adam"),
    ("Adam", "SGD"),
    ("SGD", "AdamW"),
])
def test_load_state_dict_of_a_different_optimizer(src, dst):
    src_opts = {"momentum": 0.9} if src == "SGD" else {}
    sd = _donor_state_dict(src, src_opts)
    _check_load_rejected(dst, {}, sd, r"(?i)(sgd|adam|optimizer|momentum|beta|exp_avg|step)", f"{src} state into {dst}")


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
def test_load_state_dict_with_mismatched_shapes(opt_name, options):
    sd = _donor_state_dict(opt_name, options, shapes=((10,), (3, 2)))
    _check_load_rejected(opt_name, options, sd, r"(?i)(shape|size)", "state with mismatched shapes")


@pytest.mark.parametrize("opt_name,options", OPT_CASES[1:], ids=OPT_IDS[1:])
@pytest.mark.parametrize("key", ["exp_avg", "exp_avg_sq"])
def test_load_state_dict_with_a_missing_state_key(opt_name, options, key):
    # (not SGD: torch's own SGD state omits momentum_buffer whenever momentum was 0, and a missing
    # buffer means "first step" to torch, so lrfused accepts it too)
    sd = _donor_state_dict(opt_name, options)
    del sd["state"][1][key]
    _check_load_rejected(opt_name, options, sd, key, f"state without {key}")


@pytest.mark.parametrize("missing", ["param_groups", "state"])
def test_load_state_dict_missing_top_level_key(missing):
    sd = _donor_state_dict("Adam", {})
    del sd[missing]
    _check_load_rejected("Adam", {}, sd, missing.replace("_", "."), f"state_dict without {missing}")


def test_load_state_dict_with_wrong_group_size():
    sd = _donor_state_dict("Adam", {}, shapes=((10,),))
    _check_load_rejected("Adam", {}, sd, r"(?i)(size|group|param)", "state_dict for a different number of params")


# ------------------------------------------------------------------------------------------------
# complex parameters
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES + [("Adam", {"weight_decay": 0.1, "maximize": True})],
                         ids=OPT_IDS + ["Adam-wd-maximize"])
def test_complex_params_match_torch(opt_name, options):
    """torch's optimizers handle complex parameters through real views (each of re/im as a real
    element); lrfused, a drop-in, does the same."""
    gen = torch.Generator().manual_seed(44)
    vals = [torch.randn(s, dtype=torch.complex64, generator=gen) for s in ((17,), (3, 4))]
    pa, pb = leaf_pair(vals)
    topt = getattr(torch.optim, opt_name)(pb, lr=0.05, foreach=False, **options)
    tsched = SCHEDULES["CosineAnnealingLR"].build_torch(topt, 30)
    lopt = getattr(lrfused, opt_name)(pa, lr=0.05, schedule=SCHEDULES["CosineAnnealingLR"].build_lrf(30), **options)
    real = lambda t: torch.view_as_real(t.detach()) if t.is_complex() else t  # noqa: E731
    for k in range(30):
        for a, b in zip(pa, pb):
            g = torch.randn(a.shape, dtype=torch.complex64, generator=gen)
            a.grad, b.grad = g.clone(), g.clone()
        topt.step()
        tsched.step()
        lopt.step()
        for i, (a, b) in enumerate(zip(pa, pb)):
            # TOLERANCE[float32] on the real views: scale from the largest |re| or |im| (<= the largest modulus)
            assert_close(real(a), real(b), key="param", what=f"step {k} param {i}")
            sa, sb = lrf_state(lopt, a), topt.state[b]
            for key, vb in sb.items():
                va = sa[key]
                assert va.dtype == vb.dtype and va.shape == vb.shape, (key, va.dtype, vb.dtype)
                if key == "step":
                    assert torch.equal(va, vb)
                else:
                    assert_close(real(va), real(vb), key=key, what=f"step {k} param {i}")


# ------------------------------------------------------------------------------------------------
# numerics at the edges
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opt_name,options", OPT_CASES + [("AdamW", {"amsgrad": True, "weight_decay": 0.1})],
                         ids=OPT_IDS + ["AdamW-amsgrad"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_nan_and_inf_gradients_propagate_as_torch(opt_name, options, dtype):
    """No found_inf given: a NaN/inf in a gradient goes where torch's math sends it (same NaN/inf
    pattern, finite elements within tolerance)."""
    gen = torch.Generator().manual_seed(45)
    pa, pb = leaf_pair(make_values([(12,), (2, 2)], dtype, gen))
    topt = getattr(torch.optim, opt_name)(pb, lr=0.05, foreach=False, **options)
    lopt = getattr(lrfused, opt_name)(pa, lr=0.05, **options)
    tol = TOLERANCE[dtype]
    for k in range(6):
        grads = [torch.randn(p.shape, dtype=torch.float64, generator=gen).to(dtype) for p in pa]
        if k == 2:
            grads[0][3] = float("nan")
            grads[0][7] = float("inf")
            grads[1][0, 1] = float("-inf")
        for a, b, g in zip(pa, pb, grads):
            a.grad, b.grad = g.clone(), g.clone()
        topt.step()
        lopt.step()
        for i, (a, b) in enumerate(zip(pa, pb)):
            pairs = [("param", a.detach(), b.detach())]
            pairs += [(key, lrf_state(lopt, a)[key], v) for key, v in topt.state[b].items()
                      if isinstance(v, torch.Tensor) and key != "step"]
            for key, x, y in pairs:
                assert torch.equal(x.isnan(), y.isnan()), f"step {k} param {i} {key}: NaN pattern differs"
                assert torch.equal(x.isinf() & (x > 0), y.isinf() & (y > 0)), f"step {k} param {i} {key}: +inf pattern"
                assert torch.equal(x.isinf() & (x < 0), y.isinf() & (y < 0)), f"step {k} param {i} {key}: -inf pattern"
                fin = y.isfinite()
                scale = max(1.0, y[fin].abs().max().item()) if fin.any() else 1.0
                torch.testing.assert_close(x[fin], y[fin], rtol=tol, atol=tol * scale, msg=f"step {k} param {i} {key}")
    assert pb[0].detach().isnan().any(), "the injected NaN must have reached the reference params"


@pytest.mark.parametrize("opt_name,options", OPT_CASES + [("AdamW", {"weight_decay": 0.5}), ("SGD", {"weight_decay": 0.1})],
                         ids=OPT_IDS + ["AdamW-wd", "SGD-wd"])
@pytest.mark.parametrize("schedule", [None, "StepLR", "SequentialLR", "ReduceLROnPlateau"])
def test_lr_zero_leaves_params_unchanged(opt_name, options, schedule):
    gen = torch.Generator().manual_seed(46)
    pa, pb = leaf_pair(make_values([(30,), (4,)], torch.float32, gen))
    spec = SCHEDULES[schedule] if schedule else None
    topt = getattr(torch.optim, opt_name)(pb, lr=0.0, foreach=False, **options)
    lopt = getattr(lrfused, opt_name)(pa, lr=0.0, schedule=spec.build_lrf(40) if spec else None, **options)
    for k in range(10):
        for a, b in zip(pa, pb):
            g = torch.randn(a.shape, generator=gen)
            a.grad, b.grad = g.clone(), g.clone()
        topt.step()
        lopt.step()
        if spec is not None and spec.plateau:
            lopt.report(spec.metric(k))
        for i, (a, b) in enumerate(zip(pa, pb)):
            assert torch.equal(a.detach(), b.detach()), f"step {k}: param {i} moved with lr=0"
        compare_states(lopt, topt, pa, pb, torch.float32, f"lr=0 step {k}", extra_state_keys(opt_name))
        assert lopt.get_last_lr() == [0.0]


@pytest.mark.parametrize("opt_name,options", OPT_CASES + [("AdamW", {"weight_decay": 0.1})], ids=OPT_IDS + ["AdamW-wd"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_tiny_lr_and_huge_gradients_stay_finite_where_torch_does(opt_name, options, dtype):
    gen = torch.Generator().manual_seed(47)
    pa, pb = leaf_pair(make_values([(25,), (3,)], dtype, gen))
    topt = getattr(torch.optim, opt_name)(pb, lr=1e-10, foreach=False, **options)
    lopt = getattr(lrfused, opt_name)(pa, lr=1e-10, **options)
    for k in range(5):
        for a, b in zip(pa, pb):
            g = (torch.randn(a.shape, dtype=torch.float64, generator=gen) * 1e30).to(dtype)
            a.grad, b.grad = g.clone(), g.clone()
        topt.step()
        lopt.step()
        for i, (a, b) in enumerate(zip(pa, pb)):
            assert torch.equal(a.detach().isfinite(), b.detach().isfinite()), f"step {k} param {i}: finiteness differs"
            assert_close(a, b, key="param", what=f"step {k} param {i}")
    assert all(b.detach().isfinite().all() for b in pb), "torch stays finite here; the test relies on it"
