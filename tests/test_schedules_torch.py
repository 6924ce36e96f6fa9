"""Every torch.optim.lr_scheduler policy: lrfused's C++ evaluation against torch running live (the
`opt.step(); sched.step()` loop) and against the closed form written here in fp64."""
import math
import warnings

import pytest
import torch

import lrfused
from lrfused import schedules as S

LR_A, LR_B = 0.1, 0.03  # two param groups with their own base lrs


def live_torch(make_sched, base_lrs, n, opt="sgd", step_every=1):
    """lr_k (and momentum_k) per group as torch applies them at opt.step() number k."""
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in base_lrs]
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, base_lrs)]
    if opt == "sgd":
        optim = torch.optim.SGD(groups, momentum=0.9)
    else:
        optim = torch.optim.Adam(groups, betas=(0.9, 0.999))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = make_sched(optim)
        lrs = [[] for _ in base_lrs]
        moms = [[] for _ in base_lrs]
        for k in range(n):
            for g, group in enumerate(optim.param_groups):
                lrs[g].append(float(group["lr"]))
                moms[g].append(float(group["momentum"] if opt == "sgd" else group["betas"][0]))
            optim.step()
            if k < n - 1 and (k + 1) % step_every == 0:
                sched.step()
    return [torch.tensor(x, dtype=torch.float64) for x in lrs], \
        [torch.tensor(x, dtype=torch.float64) for x in moms]


def assert_live(actual, expected, base):
    """The contract's tolerance against torch's (recursive) schedulers: |a-e| <= 1e-9*b + 1e-7*|e|."""
    err = (actual - expected).abs()
    bound = 1e-9 * base + 1e-7 * expected.abs()
    bad = (err > bound).nonzero()
    assert bad.numel() == 0, f"first mismatch at step {bad[0].item()}: {actual[bad[0]].item()} vs " \
                             f"{expected[bad[0]].item()}"


def assert_exact(actual, expected, base):
    """Closed form in fp64: 1e-12 relative (plus 1e-15*b for values that cross zero)."""
    expected = torch.as_tensor(expected, dtype=torch.float64)
    err = (actual - expected).abs()
    bound = 1e-12 * expected.abs() + 1e-15 * base
    bad = (err > bound).nonzero()
    assert bad.numel() == 0, f"first mismatch at step {bad[0].item()}: {actual[bad[0]].item()} vs " \
                             f"{expected[bad[0]].item()}"


# ---- closed forms, written independently of lrfused/csrc --------------------------------------------

def cf_cyclic(k, base_lr, max_lr, up, down, mode="triangular", gamma=1.0, fn=None, scale_mode="cycle"):
    total = up + down
    ratio = up / total
    cycle = math.floor(1 + k / total)
    x = 1 + k / total - cycle
    s = x / ratio if x <= ratio else (x - 1) / (ratio - 1)
    if fn is not None:
        g = fn(cycle) if scale_mode == "cycle" else fn(k)
    elif mode == "triangular":
        g = 1.0
    elif mode == "triangular2":
        g = 1 / 2.0 ** (cycle - 1)
    else:
        g = gamma ** k
    return base_lr + (max_lr - base_lr) * s * g, s * g


def cf_one_cycle(k, T, max_lr, pct=0.3, strategy="cos", three=False, div=25.0, final_div=1e4,
                 base_m=0.85, max_m=0.95):
    init = max_lr / div
    low = init / final_div
    if three:
        phases = [(pct * T - 1, init, max_lr, max_m, base_m), (2 * pct * T - 2, max_lr, init, base_m, max_m),
                  (T - 1, init, low, max_m, max_m)]
    else:
        phases = [(pct * T - 1, init, max_lr, max_m, base_m), (T - 1, max_lr, low, base_m, max_m)]
    k = min(k, T)
    start = 0.0
    for i, (end, u, v, mu, mv) in enumerate(phases):
        if k <= end or i == len(phases) - 1:
            p = (k - start) / (end - start)
            if strategy == "cos":
                f = lambda a, b: b + (a - b) / 2 * (math.cos(math.pi * p) + 1)  # noqa: E731
            else:
                f = lambda a, b: a + (b - a) * p  # noqa: E731
            return f(u, v), f(mu, mv)
        start = end


def cf_warm_restarts(k, b, T0, mult, eta):
    t_cur, t_i = k, T0
    while t_cur >= t_i:
        t_cur -= t_i
        t_i *= mult
    return eta + (b - eta) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


f_decay = lambda k: 0.95 ** k  # noqa: E731
f_wave = lambda k: 0.5 + 0.5 * math.cos(k / 3.0)  # noqa: E731
m_const = lambda k: 0.9  # noqa: E731
m_ramp = lambda k: 1.0 - 0.01 * k  # noqa: E731
lt = torch.optim.lr_scheduler

# (id, ours, torch factory, closed form (k, b) -> lr, steps)
CASES = [
    ("step", S.StepLR(3, 0.5), lambda o: lt.StepLR(o, 3, 0.5), lambda k, b: b * 0.5 ** (k // 3), 30),
    ("step-default", S.StepLR(7), lambda o: lt.StepLR(o, 7), lambda k, b: b * 0.1 ** (k // 7), 30),
    ("multistep", S.MultiStepLR([2, 5, 5, 9], 0.3), lambda o: lt.MultiStepLR(o, [2, 5, 5, 9], 0.3),
     lambda k, b: b * 0.3 ** sum(m <= k for m in [2, 5, 5, 9]), 15),
    ("multistep-unsorted", S.MultiStepLR([10, 3]), lambda o: lt.MultiStepLR(o, [10, 3]),
     lambda k, b: b * 0.1 ** sum(m <= k for m in [3, 10]), 15),
    ("constant-default", S.ConstantLR(), lambda o: lt.ConstantLR(o),
     lambda k, b: b * (1 / 3 if k < 5 else 1.0), 12),
    ("constant", S.ConstantLR(0.5, 3), lambda o: lt.ConstantLR(o, 0.5, 3),
     lambda k, b: b * (0.5 if k < 3 else 1.0), 12),
    ("linear-default", S.LinearLR(), lambda o: lt.LinearLR(o),
     lambda k, b: b * (1 / 3 + (1 - 1 / 3) * min(k, 5) / 5), 12),
    ("linear-down", S.LinearLR(0.5, 0.1, 10), lambda o: lt.LinearLR(o, 0.5, 0.1, 10),
     lambda k, b: b * (0.5 + (0.1 - 0.5) * min(k, 10) / 10), 25),
    ("exponential", S.ExponentialLR(0.9), lambda o: lt.ExponentialLR(o, 0.9), lambda k, b: b * 0.9 ** k, 40),
    ("exponential-up", S.ExponentialLR(1.05), lambda o: lt.ExponentialLR(o, 1.05),
     lambda k, b: b * 1.05 ** k, 40),
    ("poly-default", S.PolynomialLR(), lambda o: lt.PolynomialLR(o),
     lambda k, b: b * (1 - min(k, 5) / 5) ** 1.0, 10),
    ("poly-square", S.PolynomialLR(8, 2.0), lambda o: lt.PolynomialLR(o, 8, 2.0),
     lambda k, b: b * (1 - min(k, 8) / 8) ** 2.0, 16),
    ("poly-sqrt", S.PolynomialLR(6, 0.5), lambda o: lt.PolynomialLR(o, 6, 0.5),
     lambda k, b: b * (1 - min(k, 6) / 6) ** 0.5, 12),
    ("cosine", S.CosineAnnealingLR(10), lambda o: lt.CosineAnnealingLR(o, 10),
     lambda k, b: b * (1 + math.cos(math.pi * k / 10)) / 2, 30),
    ("cosine-eta", S.CosineAnnealingLR(7, 0.01), lambda o: lt.CosineAnnealingLR(o, 7, 0.01),
     lambda k, b: 0.01 + (b - 0.01) * (1 + math.cos(math.pi * k / 7)) / 2, 21),
    ("warm-restarts", S.CosineAnnealingWarmRestarts(5), lambda o: lt.CosineAnnealingWarmRestarts(o, 5),
     lambda k, b: cf_warm_restarts(k, b, 5, 1, 0.0), 23),
    ("warm-restarts-mult", S.CosineAnnealingWarmRestarts(3, 2, 0.005),
     lambda o: lt.CosineAnnealingWarmRestarts(o, 3, 2, 0.005),
     lambda k, b: cf_warm_restarts(k, b, 3, 2, 0.005), 50),
    ("lambda", S.LambdaLR(f_decay, 40), lambda o: lt.LambdaLR(o, f_decay), lambda k, b: b * f_decay(k), 40),
    ("lambda-wave", S.LambdaLR(f_wave, 30), lambda o: lt.LambdaLR(o, f_wave), lambda k, b: b * f_wave(k), 30),
    ("multiplicative", S.MultiplicativeLR(m_const, 30), lambda o: lt.MultiplicativeLR(o, m_const),
     lambda k, b: b * 0.9 ** k, 30),
    ("multiplicative-ramp", S.MultiplicativeLR(m_ramp, 30), lambda o: lt.MultiplicativeLR(o, m_ramp),
     lambda k, b: b * math.prod(1.0 - 0.01 * s for s in range(1, k + 1)), 30),
    ("sequential", S.SequentialLR([S.LinearLR(0.1, total_iters=4), S.CosineAnnealingLR(10)], [4]),
     lambda o: lt.SequentialLR(o, [lt.LinearLR(o, 0.1, total_iters=4), lt.CosineAnnealingLR(o, 10)], [4]),
     lambda k, b: b * (0.1 + 0.9 * k / 4) if k < 4 else b * (1 + math.cos(math.pi * (k - 4) / 10)) / 2, 20),
    ("sequential-3", S.SequentialLR([S.ConstantLR(0.5, 2), S.ExponentialLR(0.9), S.StepLR(3, 0.5)], [3, 8]),
     lambda o: lt.SequentialLR(o, [lt.ConstantLR(o, 0.5, 2), lt.ExponentialLR(o, 0.9), lt.StepLR(o, 3, 0.5)],
                               [3, 8]),
     lambda k, b: (b * (0.5 if k < 2 else 1.0) if k < 3 else b * 0.9 ** (k - 3) if k < 8
                   else b * 0.5 ** ((k - 8) // 3)), 20),
    ("chained", S.ChainedScheduler([S.ConstantLR(0.5, 3), S.ExponentialLR(0.9)]),
     lambda o: lt.ChainedScheduler([lt.ConstantLR(o, 0.5, 3), lt.ExponentialLR(o, 0.9)]),
     lambda k, b: b * (0.5 if k < 3 else 1.0) * 0.9 ** k, 15),
    ("chained-3", S.ChainedScheduler([S.LinearLR(0.2, 1.0, 5), S.StepLR(4, 0.5), S.PolynomialLR(20, 2.0)]),
     lambda o: lt.ChainedScheduler([lt.LinearLR(o, 0.2, 1.0, 5), lt.StepLR(o, 4, 0.5),
                                    lt.PolynomialLR(o, 20, 2.0)]),
     lambda k, b: b * (0.2 + 0.8 * min(k, 5) / 5) * 0.5 ** (k // 4) * (1 - min(k, 20) / 20) ** 2, 20),
    ("chained-cosine", S.ChainedScheduler([S.MultiStepLR([3, 6]), S.CosineAnnealingLR(10)]),
     lambda o: lt.ChainedScheduler([lt.MultiStepLR(o, [3, 6]), lt.CosineAnnealingLR(o, 10)]),
     lambda k, b: b * 0.1 ** sum(m <= k for m in [3, 6]) * (1 + math.cos(math.pi * k / 10)) / 2, 10),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_policy_matches_live_torch_and_closed_form(case):
    _, ours, make, closed, n = case
    expected, _ = live_torch(make, [LR_A, LR_B], n)
    for g, b in enumerate([LR_A, LR_B]):
        actual = ours.lrs(n, b)
        assert actual.dtype == torch.float64 and actual.shape == (n,)
        assert_live(actual, expected[g], b)
        assert_exact(actual, [closed(k, b) for k in range(n)], b)


def test_cosine_past_t_max_rises_again_as_torch():
    T = 6
    expected, _ = live_torch(lambda o: lt.CosineAnnealingLR(o, T, 0.002), [LR_A, LR_B], 3 * T + 1)
    for g, b in enumerate([LR_A, LR_B]):
        actual = S.CosineAnnealingLR(T, 0.002).lrs(3 * T + 1, b)
        assert_live(actual, expected[g], b)
        assert actual[2 * T] == pytest.approx(b, rel=1e-12)  # back at the top after 2*T_max


def test_tabulated_policies_hold_last_value_past_total_steps():
    n = 12
    lam = S.LambdaLR(f_decay, n)
    mul = S.MultiplicativeLR(m_const, n)
    assert_exact(lam.lrs(3 * n, 2.0), [2.0 * f_decay(min(k, n - 1)) for k in range(3 * n)], 2.0)
    assert_exact(mul.lrs(3 * n, 2.0), [2.0 * 0.9 ** min(k, n - 1) for k in range(3 * n)], 2.0)


def test_lambda_per_group_lists():
    fns = [f_decay, f_wave]
    n = 25
    expected, _ = live_torch(lambda o: lt.LambdaLR(o, fns), [LR_A, LR_B], n)
    ours = S.LambdaLR(fns, n)
    for g, b in enumerate([LR_A, LR_B]):
        assert_live(ours.lrs(n, b, group=g), expected[g], b)
        assert_exact(ours.lrs(n, b, group=g), [b * fns[g](k) for k in range(n)], b)
    mfns = [m_const, m_ramp]
    expected, _ = live_torch(lambda o: lt.MultiplicativeLR(o, mfns), [LR_A, LR_B], n)
    ours = S.MultiplicativeLR(mfns, n)
    for g, b in enumerate([LR_A, LR_B]):
        assert_live(ours.lrs(n, b, group=g), expected[g], b)


CYCLIC = [
    ("triangular", dict(base_lr=0.01, max_lr=0.1, step_size_up=4), {}),
    ("triangular2", dict(base_lr=0.01, max_lr=0.1, step_size_up=3, step_size_down=5, mode="triangular2"),
     dict(mode="triangular2")),
    ("exp_range", dict(base_lr=0.02, max_lr=0.2, step_size_up=5, mode="exp_range", gamma=0.97),
     dict(mode="exp_range", gamma=0.97)),
    ("custom-cycle", dict(base_lr=0.01, max_lr=0.1, step_size_up=2, step_size_down=3,
                          scale_fn=lambda c: 1.0 / c), dict(fn=lambda c: 1.0 / c)),
    ("custom-iterations", dict(base_lr=0.01, max_lr=0.1, step_size_up=4, scale_mode="iterations",
                               scale_fn=lambda x: 0.99 ** x),
     dict(fn=lambda x: 0.99 ** x, scale_mode="iterations")),
    ("momenta", dict(base_lr=0.01, max_lr=0.1, step_size_up=3, base_momentum=0.7, max_momentum=0.95), {}),
]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("case", CYCLIC, ids=[c[0] for c in CYCLIC])
def test_cyclic(case, opt):
    _, kw, cf = case
    n = 40
    expected, expected_m = live_torch(lambda o: lt.CyclicLR(o, **kw), [LR_A, LR_B], n, opt=opt)
    ours_kw = dict(kw)
    if "scale_fn" in kw:
        ours_kw["total_steps"] = n
    ours = S.CyclicLR(**ours_kw)
    assert ours.cycles_momentum
    bm, mm = kw.get("base_momentum", 0.8), kw.get("max_momentum", 0.9)
    closed = [cf_cyclic(k, kw["base_lr"], kw["max_lr"], kw["step_size_up"],
                        kw.get("step_size_down", kw["step_size_up"]), **cf) for k in range(n)]
    for g, b in enumerate([LR_A, LR_B]):
        assert_live(ours.lrs(n, b), expected[g], kw["base_lr"])
        assert_exact(ours.lrs(n, b), [c[0] for c in closed], kw["max_lr"])
        m = ours.momenta(n, 0.5)
        assert_live(m, expected_m[g], mm)
        assert_exact(m, [mm - (mm - bm) * c[1] for c in closed], mm)


def test_cyclic_per_group_lists_and_no_momentum():
    n = 30
    kw = dict(base_lr=[0.01, 0.002], max_lr=[0.1, 0.05], step_size_up=4, base_momentum=[0.8, 0.7],
              max_momentum=[0.9, 0.85])
    expected, expected_m = live_torch(lambda o: lt.CyclicLR(o, **kw), [LR_A, LR_B], n)
    ours = S.CyclicLR(**kw)
    for g in range(2):
        assert_live(ours.lrs(n, group=g), expected[g], kw["base_lr"][g])
        assert_live(ours.momenta(n, 0.0, group=g), expected_m[g], 0.9)
        assert_live(torch.ops.lrfused.schedule_lrs(ours.program(g, 2), torch.arange(n), 1.0), expected[g], 0.1)
    flat = S.CyclicLR(0.01, 0.1, step_size_up=4, cycle_momentum=False)
    assert not flat.cycles_momentum
    assert torch.equal(flat.momenta(n, 0.37), torch.full((n,), 0.37, dtype=torch.float64))
    with pytest.raises(ValueError, match="base_lr must have the same length as optimizer.param_groups"):
        ours.program(0, 3)


ONE_CYCLE = [
    ("default", dict(max_lr=0.5, total_steps=20), {}),
    ("three-phase", dict(max_lr=0.5, total_steps=30, three_phase=True), dict(three=True)),
    ("linear", dict(max_lr=1.0, total_steps=25, anneal_strategy="linear", pct_start=0.4),
     dict(strategy="linear", pct=0.4)),
    ("epochs", dict(max_lr=0.3, epochs=4, steps_per_epoch=6, div_factor=10.0, final_div_factor=100.0,
                    base_momentum=0.8, max_momentum=0.9),
     dict(div=10.0, final_div=100.0, base_m=0.8, max_m=0.9)),
]


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("case", ONE_CYCLE, ids=[c[0] for c in ONE_CYCLE])
def test_one_cycle(case, opt):
    _, kw, cf = case
    ours = S.OneCycleLR(**kw)
    T = ours.total_steps
    assert ours.max_step() == T
    n = T + 1  # torch's scheduler raises past step T
    expected, expected_m = live_torch(lambda o: lt.OneCycleLR(o, **kw), [LR_A, LR_B], n, opt=opt)
    closed = [cf_one_cycle(k, T, kw["max_lr"], **cf) for k in range(n)]
    for g, b in enumerate([LR_A, LR_B]):
        assert_live(ours.lrs(n, b), expected[g], kw["max_lr"])
        assert_exact(ours.lrs(n, b), [c[0] for c in closed], kw["max_lr"])
        assert_live(ours.momenta(n, 0.0), expected_m[g], 1.0)
        assert_exact(ours.momenta(n, 0.0), [c[1] for c in closed], 1.0)
    # past T (reachable only inside a captured graph) lr(T) holds
    tail = ours.lrs(T + 5)
    assert torch.equal(tail[T:], torch.full((5,), tail[T].item(), dtype=torch.float64))


def test_one_cycle_per_group_max_lr():
    kw = dict(max_lr=[0.5, 0.05], total_steps=16, base_momentum=[0.85, 0.8], max_momentum=[0.95, 0.9])
    expected, expected_m = live_torch(lambda o: lt.OneCycleLR(o, **kw), [LR_A, LR_B], 17)
    ours = S.OneCycleLR(**kw)
    for g in range(2):
        assert_live(ours.lrs(17, group=g), expected[g], kw["max_lr"][g])
        assert_live(ours.momenta(17, group=g), expected_m[g], 1.0)


def test_per_epoch_matches_torch_stepped_per_epoch():
    spe = 3
    n = 30
    expected, _ = live_torch(lambda o: lt.StepLR(o, 2, 0.5), [LR_A, LR_B], n, step_every=spe)
    ours = S.StepLR(2, 0.5).per_epoch(spe)
    for g, b in enumerate([LR_A, LR_B]):
        assert_live(ours.lrs(n, b), expected[g], b)
        assert_exact(ours.lrs(n, b), [b * 0.5 ** ((k // spe) // 2) for k in range(n)], b)
    expected, _ = live_torch(lambda o: lt.CosineAnnealingLR(o, 5), [LR_A], n, step_every=spe)
    assert_live(S.CosineAnnealingLR(5).per_epoch(spe).lrs(n, LR_A), expected[0], LR_A)
    assert S.OneCycleLR(1.0, total_steps=4).per_epoch(spe).max_step() == 5 * spe - 1


def test_sequential_momentum_follows_active_child():
    oc = S.OneCycleLR(1.0, total_steps=10)
    seq = S.SequentialLR([oc, S.ConstantLR(0.5, 3)], [8])
    assert seq.cycles_momentum and seq.max_step() is None
    m = seq.momenta(14, 0.42)
    assert torch.equal(m[:8], oc.momenta(8, 0.0))
    assert torch.equal(m[8:], torch.full((6,), 0.42, dtype=torch.float64))
    lr = seq.lrs(14, 2.0)
    assert torch.equal(lr[:8], oc.lrs(8))
    assert_exact(lr[8:], [2.0 * (0.5 if k < 3 else 1.0) for k in range(6)], 2.0)
    # a OneCycleLR whose segment runs past its total_steps bounds the eager range
    assert S.SequentialLR([S.OneCycleLR(1.0, total_steps=5), S.Constant()], [9]).max_step() == 5
    assert S.SequentialLR([S.Constant(), S.OneCycleLR(1.0, total_steps=5)], [9]).max_step() == 14


def test_lrs_equals_lr_at_at_every_step():
    for _, ours, _, _, n in CASES:
        lrs = ours.lrs(n, 0.7)
        assert [ours.lr_at(k, 0.7) for k in range(n)] == lrs.tolist()
    oc = S.OneCycleLR(1.0, total_steps=12)
    assert [oc.lr_at(k) for k in range(13)] == oc.lrs(13).tolist()
    assert [oc.momentum_at(k) for k in range(13)] == oc.momenta(13).tolist()


def test_one_cycle_without_first_phase_steps_is_refused_as_torch_refuses_it():
    """pct_start * total_steps == 1: torch's first phase ends at step 0 and its constructor divides 0 by 0;
    lrfused refuses the schedule (instead of a NaN lr) with a ValueError that names the cause."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ZeroDivisionError):
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.1)
    with pytest.raises(ValueError, match="pct_start"):
        S.OneCycleLR(1.0, total_steps=10, pct_start=0.1)


def test_one_cycle_with_pct_start_one_stops_where_torch_fails():
    """pct_start = 1: the last phase has no steps; torch's step total_steps divides by zero, lrfused's optimizer
    refuses that step before anything changes, and every step before it matches torch."""
    T = 8
    p_t, p_l = (torch.nn.Parameter(torch.ones(3, dtype=torch.float64)) for _ in range(2))
    opt_t = torch.optim.SGD([p_t], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt_t, max_lr=1.0, total_steps=T, pct_start=1.0,
                                                cycle_momentum=False)
    opt_l = lrfused.SGD([p_l], lr=0.1, schedule=S.OneCycleLR(1.0, total_steps=T, pct_start=1.0,
                                                             cycle_momentum=False))
    for _ in range(T - 1):
        p_t.grad, p_l.grad = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
        opt_t.step()
        sched.step()
        opt_l.step()
    torch.testing.assert_close(p_l.detach(), p_t.detach(), rtol=1e-12, atol=1e-14)
    p_t.grad, p_l.grad = torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    opt_t.step()
    with pytest.raises(ZeroDivisionError):
        sched.step()  # torch's step T
    opt_l.step()  # lrfused's step T - 1 (k = 7): the last valid one
    before = p_l.detach().clone()
    with pytest.raises(ValueError, match="past the end"):
        opt_l.step()  # k = T
    assert torch.equal(p_l.detach(), before)
