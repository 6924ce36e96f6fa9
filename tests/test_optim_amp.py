"""step(grad_scale=, found_inf=) against torch's fused=True CPU optimizers, and GradScaler driving lrfused.

torch's fused optimizers take the two tensors as attributes (``opt.grad_scale``, ``opt.found_inf``, set
by GradScaler); lrfused takes them as keyword arguments of ``step()``.  Semantics compared: gradients
are divided by ``grad_scale``; ``found_inf != 0`` leaves params and state untouched and does not
advance the step count.  Beyond torch: a skipped step does not advance lrfused's schedule either, so
the reference steps its torch scheduler only after steps that were not skipped.  The tests that take the
`device` fixture run on the CPU and on a GPU (torch's fused optimizers and GradScaler on either).
"""
import pytest
import torch

import lrfused

from optim_helpers import (
    SCHEDULES,
    assert_lr_close,
    compare_states,
    extra_state_keys,
    leaf_pair,
    lrf_state,
    make_values,
    snapshot,
    tensor_state,
    assert_bitwise_equal_snapshot,
)

OPT_CASES = [
    ("SGD", {"momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"momentum": 0.9, "nesterov": True, "maximize": True}),
    ("SGD", {}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True, "weight_decay": 0.05, "maximize": True}),
    ("AdamW", {"betas": (0.8, 0.99)}),
    ("AdamW", {"amsgrad": True}),
]
OPT_IDS = [f"{n}-{i}" for i, (n, _) in enumerate(OPT_CASES)]
SHAPES = [(50,), (3, 7), (1,)]
SKIPPED = {4, 5, 11}  # never the first step: torch's fused SGD leaves an uninitialised momentum buffer then


def _scaled_grads(params, gen, scale, inject):
    grads = [torch.randn(p.shape, dtype=torch.float64, generator=gen).to(p.device, p.dtype) * scale for p in params]
    if inject:
        grads[0].view(-1)[0] = float("inf")
        grads[-1].view(-1)[-1] = float("nan")
    return grads


def _sgd_without_momentum(opt_name, options):
    return opt_name == "SGD" and not options.get("momentum")


def _fused_cases():
    cases = []
    for (opt_name, options), oid in zip(OPT_CASES, OPT_IDS):
        # SGD(momentum=0) + momentum cycling: see test_optim_parity.test_momentum_cycling_overrides_constructor_momentum
        main = "StepLR" if _sgd_without_momentum(opt_name, options) else "OneCycleLR"
        for which in ("both", "grad_scale_only", "found_inf_only"):
            cases.append(pytest.param(opt_name, options, torch.float64, main, which, id=f"{oid}-fp64-{main}-{which}"))
        cases.append(pytest.param(opt_name, options, torch.float64, "constant", "both", id=f"{oid}-fp64-constant-both"))
        cases.append(pytest.param(opt_name, options, torch.float32, "CosineAnnealingWarmRestarts", "both",
                                  id=f"{oid}-fp32-CosineAnnealingWarmRestarts-both"))
    return cases


@pytest.mark.parametrize("opt_name,options,dtype,sched_name,which", _fused_cases())
def test_matches_torch_fused(opt_name, options, dtype, sched_name, which, device):
    spec = SCHEDULES[sched_name]
    n = 25
    gen = torch.Generator().manual_seed(21)
    pa, pb = leaf_pair([v.to(device) for v in make_values(SHAPES, dtype, gen)])
    topt = getattr(torch.optim, opt_name)(pb, lr=0.05, fused=True, **options)
    tsched = spec.build_torch(topt, n)
    lopt = getattr(lrfused, opt_name)(pa, lr=0.05, schedule=spec.build_lrf(n), **options)
    for k in range(n):
        skip = k in SKIPPED and which != "grad_scale_only"
        scale = 2.0 ** (k % 7 + 3) if which != "found_inf_only" else 1.0
        grads = _scaled_grads(pa, gen, scale, inject=skip)
        for a, b, g in zip(pa, pb, grads):
            a.grad = g.clone()
            b.grad = g.clone()
        kwargs = {}
        if which != "found_inf_only":
            kwargs["grad_scale"] = torch.tensor(scale, dtype=torch.float32, device=device)
        if which != "grad_scale_only":
            kwargs["found_inf"] = torch.tensor(1.0 if skip else 0.0, dtype=torch.float32, device=device)
        for key, v in kwargs.items():
            setattr(topt, key, v.clone())
        applied = [g["lr"] for g in topt.param_groups]
        topt.step()
        lopt.step(**kwargs)
        if tsched is not None and not skip:
            tsched.step()
        what = f"{opt_name}{options} {sched_name} {which} {dtype} step {k} (skipped={skip})"
        compare_states(lopt, topt, pa, pb, dtype, what, extra_state_keys(opt_name))
        if not skip:
            assert_lr_close(lopt.get_last_lr(), applied, 0.1, what)
            if which != "found_inf_only":
                # torch's fused kernels store the unscaled gradients back (lrfused's README: so does it);
                # the scales are powers of two, so unscaling is exact however it is computed
                for i, (a, b) in enumerate(zip(pa, pb)):
                    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, msg=f"{what}: unscaled grad {i}")


@pytest.mark.parametrize("opt_name,options,sched_name", [
    pytest.param(o, opts, sched, id=f"{oid}-{sched}")
    for (o, opts), oid in zip(OPT_CASES, OPT_IDS)
    for sched in ("OneCycleLR", "StepLR", "CyclicLR", "ReduceLROnPlateau")
    if not (_sgd_without_momentum(o, opts) and SCHEDULES[sched].cycles_momentum)
])
def test_skipped_steps_are_invisible(opt_name, options, sched_name, device):
    """A run with skipped steps (found_inf=1, inf/nan in the grads; the first step included) equals,
    bit for bit, the run in which those steps never happened: same params, state, step counts, lr."""
    spec = SCHEDULES[sched_name]
    n, skips = 30, {0, 3, 4, 17}
    cls = getattr(lrfused, opt_name)
    gen = torch.Generator().manual_seed(22)
    vals = [v.to(device) for v in make_values(SHAPES, torch.float32, gen)]
    pa, pb = leaf_pair(vals)
    a = cls(pa, lr=0.05, schedule=spec.build_lrf(n), **options)
    b = cls(pb, lr=0.05, schedule=spec.build_lrf(n), **options)
    kb = 0  # steps taken by b
    for k in range(n):
        skip = k in skips
        grads = _scaled_grads(pa, gen, 8.0, inject=skip)
        for p, g in zip(pa, grads):
            p.grad = g.clone()
        a.step(grad_scale=torch.tensor(8.0, device=device), found_inf=torch.tensor(float(skip), device=device))
        if skip:
            continue
        for p, g in zip(pb, grads):
            p.grad = g / 8.0
        b.step()
        if spec.plateau:
            a.report(spec.metric(kb))
            b.report(spec.metric(kb))
        kb += 1
        for i, (x, y) in enumerate(zip(pa, pb)):
            # grad / 8 is exact in binary, so unscaling inside the kernel gives the same bits
            assert torch.equal(x.detach(), y.detach()), f"step {k}: param {i}"
            sx, sy = tensor_state(lrf_state(a, x)), tensor_state(lrf_state(b, y))
            assert set(sx) == set(sy)
            for key in sx:
                assert torch.equal(sx[key], sy[key]), f"step {k}: param {i} {key}"
        assert a.get_last_lr() == b.get_last_lr(), f"step {k}"


@pytest.mark.parametrize("opt_name,options", OPT_CASES, ids=OPT_IDS)
@pytest.mark.parametrize("bad", ["inf", "nan", "finite"])
def test_found_inf_leaves_params_and_state_bit_identical(opt_name, options, bad, device):
    """A step with found_inf set leaves params, state and step counters bit-identical, and the gradients as
    they were (a skipped step does not unscale them); the schedule does not advance."""
    gen = torch.Generator().manual_seed(23)
    params = [v.to(device).requires_grad_(True) for v in make_values(SHAPES, torch.float32, gen)]
    opt = getattr(lrfused, opt_name)(params, lr=0.05, schedule=SCHEDULES["ExponentialLR"].build_lrf(10), **options)
    for k in range(3):
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen).to(device)
        opt.step()
    lr_before = opt.get_last_lr()
    snap = snapshot(params, opt, lrf_state)
    grads = []
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device)
        if bad != "finite":
            p.grad.view(-1)[0] = float(bad)
        grads.append(p.grad.clone())
    opt.step(grad_scale=torch.tensor(65536.0, device=device), found_inf=torch.tensor(1.0, device=device))
    assert_bitwise_equal_snapshot(params, opt, snap, lrf_state, f"found_inf=1 ({bad} grads)")
    for i, (p, g) in enumerate(zip(params, grads)):
        assert torch.equal(p.grad.view(torch.int32), g.view(torch.int32)), f"found_inf=1 ({bad} grads): grad {i} changed"
    assert opt.get_last_lr() == lr_before
    # the next real step applies lr_3, the lr the skipped step would have applied
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen).to(device)
    opt.step()
    expected = SCHEDULES["ExponentialLR"].build_lrf(10).lr_at(3, 0.05)
    assert opt.get_last_lr() == [expected] and expected != lr_before[0]


# ------------------------------------------------------------------------------------------------
# torch.amp.GradScaler
# ------------------------------------------------------------------------------------------------


def _amp_run(make_opt, make_sched, inject_at, steps, dtype, device="cpu"):
    """A tiny regression model trained with GradScaler(device); infs injected into a gradient after
    backward at the steps in ``inject_at``.  Returns params, optimizer, scaler, scale history."""
    g = torch.Generator().manual_seed(31)
    w = torch.randn(8, 5, dtype=dtype, generator=g).to(device).requires_grad_(True)
    b = torch.randn(5, dtype=dtype, generator=g).to(device).requires_grad_(True)
    x = torch.randn(steps, 16, 8, dtype=dtype, generator=g).to(device)
    y = torch.randn(steps, 16, 5, dtype=dtype, generator=g).to(device)
    opt = make_opt([w, b])
    sched = make_sched(opt)
    scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 12, growth_interval=3)
    scales = []
    for k in range(steps):
        opt.zero_grad()
        loss = ((x[k] @ w + b - y[k]) ** 2).mean()
        scaler.scale(loss).backward()
        if k in inject_at:
            w.grad[1, 2] = float("inf")
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
        if sched is not None and k not in inject_at:
            sched.step()
    return [w, b], opt, scaler, scales


@pytest.mark.parametrize("opt_name,options", [OPT_CASES[0], OPT_CASES[4], OPT_CASES[5]], ids=["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("sched_name", ["constant", "OneCycleLR"])
def test_grad_scaler_drives_lrfused(opt_name, options, sched_name, device):
    spec = SCHEDULES[sched_name]
    steps, inject = 24, {2, 3, 9, 15}
    pl, lopt, lscaler, lscales = _amp_run(
        lambda ps: getattr(lrfused, opt_name)(ps, lr=0.02, schedule=spec.build_lrf(steps), **options),
        lambda o: None, inject, steps, torch.float64, device)
    pt, topt, tscaler, tscales = _amp_run(
        lambda ps: getattr(torch.optim, opt_name)(ps, lr=0.02, fused=True, **options),
        lambda o: spec.build_torch(o, steps), inject, steps, torch.float64, device)
    assert lscales == tscales
    assert len(set(tscales)) > 2, "the scale must both back off and grow in this run"
    compare_states(lopt, topt, pl, pt, torch.float64, f"GradScaler {opt_name} {sched_name}", extra_state_keys(opt_name))
    if opt_name != "SGD":
        for p in pl:
            assert lrf_state(lopt, p)["step"].item() == steps - len(inject)


@pytest.mark.parametrize("opt_name,options", [OPT_CASES[0], OPT_CASES[3]], ids=["SGD", "Adam"])
def test_skipped_steps_do_not_count_towards_onecycle_total(opt_name, options):
    """OneCycleLR(total_steps=T) allows k = 0..T; AMP-skipped calls in between do not use up steps."""
    total = 10
    sched = lrfused.schedules.OneCycleLR(max_lr=0.1, total_steps=total)
    gen = torch.Generator().manual_seed(24)
    params = [v.requires_grad_(True) for v in make_values(SHAPES, torch.float32, gen)]
    opt = getattr(lrfused, opt_name)(params, lr=0.05, schedule=sched, **options)
    k = 0
    for call in range(total + 1 + 4):
        skip = call in (1, 4, 5, 12)
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen)
        opt.step(found_inf=torch.tensor(float(skip)))
        if not skip:
            assert opt.get_last_lr() == [sched.lr_at(k, 0.05)], f"call {call} (k={k})"
            k += 1
    assert k == total + 1
    with pytest.raises(ValueError, match=r"(?i)(total.steps|past|exceed)"):
        opt.step(found_inf=torch.tensor(0.0))
