"""Schedule objects: from_torch round trips, pickling / deepcopy / immutability, argument checks,
composites' properties, plotting and the gallery."""
import copy
import math
import pickle
import warnings

import pytest
import torch

from lrfused import contract
from lrfused import schedules as S
from test_schedules_torch import CASES, LR_A, LR_B, assert_live, live_torch

lt = torch.optim.lr_scheduler


def _opt(n_groups=2, adam=False):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in [LR_A, LR_B][:n_groups]]
    return torch.optim.Adam(groups) if adam else torch.optim.SGD(groups, momentum=0.9)


def _fresh(make, adam=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make(_opt(adam=adam))


def scale_half(c):
    return 0.5 ** (c - 1)


# (torch factory, the lrfused schedule it must map to, steps for the live comparison)
FROM_TORCH = [
    (lambda o: lt.StepLR(o, 3, 0.5), S.StepLR(3, 0.5), 20),
    (lambda o: lt.MultiStepLR(o, [4, 2, 4], 0.3), S.MultiStepLR([2, 4, 4], 0.3), 10),
    (lambda o: lt.ConstantLR(o, 0.25, 4), S.ConstantLR(0.25, 4), 10),
    (lambda o: lt.LinearLR(o, 0.2, 0.9, 6), S.LinearLR(0.2, 0.9, 6), 10),
    (lambda o: lt.ExponentialLR(o, 0.8), S.ExponentialLR(0.8), 10),
    (lambda o: lt.PolynomialLR(o, 7, 1.5), S.PolynomialLR(7, 1.5), 10),
    (lambda o: lt.CosineAnnealingLR(o, 9, 0.001), S.CosineAnnealingLR(9, 0.001), 27),
    (lambda o: lt.CosineAnnealingWarmRestarts(o, 4, 2, 0.01), S.CosineAnnealingWarmRestarts(4, 2, 0.01), 30),
    (lambda o: lt.LambdaLR(o, lambda k: 1 / (1 + k)), S.LambdaLR(lambda k: 1 / (1 + k), S.DEFAULT_TABULATE_STEPS),
     30),
    (lambda o: lt.LambdaLR(o, [lambda k: 0.9 ** k, lambda k: 1.0 + k]),
     S.LambdaLR([lambda k: 0.9 ** k, lambda k: 1.0 + k], S.DEFAULT_TABULATE_STEPS), 20),
    (lambda o: lt.MultiplicativeLR(o, lambda k: 0.95), S.MultiplicativeLR(lambda k: 0.95, S.DEFAULT_TABULATE_STEPS),
     20),
    (lambda o: lt.CyclicLR(o, 0.01, 0.1, step_size_up=3, step_size_down=5, mode="triangular2"),
     S.CyclicLR(0.01, 0.1, 3, 5, mode="triangular2"), 30),
    (lambda o: lt.CyclicLR(o, [0.01, 0.02], [0.1, 0.2], step_size_up=4, mode="exp_range", gamma=0.95,
                           base_momentum=[0.7, 0.75], max_momentum=0.9),
     S.CyclicLR([0.01, 0.02], [0.1, 0.2], 4, mode="exp_range", gamma=0.95, base_momentum=[0.7, 0.75],
                max_momentum=0.9), 30),
    (lambda o: lt.CyclicLR(o, 0.01, 0.1, step_size_up=2, scale_fn=scale_half, cycle_momentum=False),
     S.CyclicLR(0.01, 0.1, 2, scale_fn=scale_half, cycle_momentum=False,
                total_steps=S.DEFAULT_TABULATE_STEPS), 30),
    (lambda o: lt.OneCycleLR(o, 0.4, total_steps=20), S.OneCycleLR(0.4, total_steps=20), 21),
    (lambda o: lt.OneCycleLR(o, [0.4, 0.2], epochs=3, steps_per_epoch=7, pct_start=0.25, anneal_strategy="linear",
                             three_phase=True, div_factor=5.0, final_div_factor=50.0, base_momentum=0.8),
     S.OneCycleLR([0.4, 0.2], epochs=3, steps_per_epoch=7, pct_start=0.25, anneal_strategy="linear",
                  three_phase=True, div_factor=5.0, final_div_factor=50.0, base_momentum=0.8), 22),
    (lambda o: lt.SequentialLR(o, [lt.LinearLR(o, 0.1, total_iters=3), lt.ExponentialLR(o, 0.9)], [3]),
     S.SequentialLR([S.LinearLR(0.1, total_iters=3), S.ExponentialLR(0.9)], [3]), 12),
    (lambda o: lt.ChainedScheduler([lt.ConstantLR(o, 0.5, 2), lt.StepLR(o, 3, 0.5)]),
     S.ChainedScheduler([S.ConstantLR(0.5, 2), S.StepLR(3, 0.5)]), 12),
]


@pytest.mark.parametrize("case", FROM_TORCH, ids=[type(c[1]).__name__ + str(i) for i, c in enumerate(FROM_TORCH)])
def test_from_torch_round_trip(case):
    make, direct, n = case
    mapped = S.from_torch(_fresh(make))
    if not isinstance(direct, S.OneCycleLR):  # OneCycleLR's args are recovered up to rounding
        assert mapped == direct
    expected, expected_m = live_torch(make, [LR_A, LR_B], n)
    for g, b in enumerate([LR_A, LR_B]):
        for s in (mapped, direct):
            assert_live(s.lrs(n, b, group=g), expected[g], max(b, 0.4))
            if s.cycles_momentum:
                assert_live(s.momenta(n, 0.0, group=g), expected_m[g], 1.0)
        assert torch.allclose(mapped.lrs(n, b, group=g), direct.lrs(n, b, group=g), rtol=1e-12, atol=0)


def test_from_torch_plateau_and_nested():
    o = _opt()
    p = S.from_torch(lt.ReduceLROnPlateau(o, mode="max", factor=0.3, patience=4, threshold=0.1,
                                          threshold_mode="abs", cooldown=2, min_lr=[0.001, 0.002], eps=1e-9))
    assert p == S.ReduceLROnPlateau(mode="max", factor=0.3, patience=4, threshold=0.1, threshold_mode="abs",
                                    cooldown=2, min_lr=[0.001, 0.002], eps=1e-9)
    assert S.from_torch(lt.ReduceLROnPlateau(_opt(), min_lr=0.01)).plateau_config(3)[7:] == [0.01] * 3

    def nested(o):
        inner = lt.SequentialLR(o, [lt.ConstantLR(o, 0.5, 2), lt.ExponentialLR(o, 0.9)], [2])
        return lt.SequentialLR(o, [lt.LinearLR(o, 0.2, total_iters=3), inner], [3])

    mapped = S.from_torch(_fresh(nested))
    assert mapped == S.SequentialLR([S.LinearLR(0.2, total_iters=3),
                                     S.SequentialLR([S.ConstantLR(0.5, 2), S.ExponentialLR(0.9)], [2])], [3])
    b = 0.1
    expected = [b * (0.2 + 0.8 * k / 3) if k < 3 else b * (0.5 if k - 3 < 2 else 0.9 ** (k - 5))
                for k in range(12)]
    assert torch.allclose(mapped.lrs(12, b), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    chained_in_seq = _fresh(lambda o: lt.SequentialLR(
        o, [lt.StepLR(o, 2), lt.ChainedScheduler([lt.ExponentialLR(o, 0.9), lt.StepLR(o, 3)])], [4]))
    assert S.from_torch(chained_in_seq) == S.SequentialLR(
        [S.StepLR(2), S.ChainedScheduler([S.ExponentialLR(0.9), S.StepLR(3)])], [4])


def test_from_torch_total_steps_and_unknown():
    s = S.from_torch(lt.LambdaLR(_opt(), lambda k: 0.5 ** k), total_steps=6)
    assert s.total_steps == 6 and s.lrs(9).tolist() == [0.5 ** min(k, 5) for k in range(9)]
    with pytest.raises(TypeError, match="unsupported scheduler type"):
        S.from_torch(object())
    with pytest.raises(ValueError, match="total_steps"):
        S.from_torch(lt.StepLR(_opt(), 2), total_steps=0)


ALL = [c[1] for c in CASES] + [c[1] for c in FROM_TORCH] + [
    S.Constant(), S.ReduceLROnPlateau(min_lr=[0.1, 0.2]), S.StepLR(2).per_epoch(5),
    S.get_schedule("cosine", 10, 100), S.get_schedule("warmup_stable_decay", 5, 50, num_decay_steps=10),
    S.CyclicLR(0.1, 1.0, 4, scale_fn=lambda x: 1.0 / x, total_steps=40),
]


@pytest.mark.parametrize("s", ALL, ids=[type(s).__name__ + str(i) for i, s in enumerate(ALL)])
def test_pickle_deepcopy_repr_immutable(s):
    s.lrs(3)  # populate the packing cache: it must not leak into pickles or equality
    for clone in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s), copy.copy(s)):
        assert clone == s and hash(clone) == hash(s)
        assert torch.equal(clone.lrs(30, 0.3), s.lrs(30, 0.3))
        assert torch.equal(clone.momenta(30, 0.5), s.momenta(30, 0.5))
    text = repr(s)
    assert text.startswith(type(s).__name__) or text.startswith("get_schedule(")
    assert "<" not in text or "lambda" in text
    with pytest.raises(AttributeError, match="immutable"):
        s.gamma = 0.5
    assert len(pickle.dumps(s)) < 200_000


def test_repr_examples():
    assert repr(S.StepLR(3)) == "StepLR(step_size=3, gamma=0.1)"
    assert repr(S.SequentialLR([S.Constant(), S.ExponentialLR(0.9)], [5])) == \
        "SequentialLR(schedules=(Constant(), ExponentialLR(gamma=0.9)), milestones=(5,))"
    assert repr(S.get_schedule("linear", 10, 100)) == \
        "get_schedule('linear', num_warmup_steps=10, num_training_steps=100)"
    assert repr(S.LambdaLR(lambda k: 0.5, 10)) == "LambdaLR(total_steps=10, table=[0.5, 0.5, 0.5, ...])"


def test_cycles_momentum_and_max_step_propagate():
    oc = S.OneCycleLR(1.0, total_steps=30)
    assert oc.cycles_momentum and not S.OneCycleLR(1.0, total_steps=30, cycle_momentum=False).cycles_momentum
    assert S.SequentialLR([S.Constant(), oc], [10]).cycles_momentum
    assert S.SequentialLR([S.Constant(), oc], [10]).max_step() == 40
    assert oc.per_epoch(2).cycles_momentum
    assert not S.SequentialLR([S.Constant(), S.StepLR(3)], [10]).cycles_momentum
    assert S.ChainedScheduler([S.StepLR(3), S.ExponentialLR(0.9)]).max_step() is None
    assert S.Constant().max_step() is None and not S.Constant().is_plateau


def test_program_format():
    schedule = S.SequentialLR([S.StepLR(3, 0.5), S.ExponentialLR(0.9)], [4])
    prog = schedule.program(0, 1)
    assert prog.dtype == torch.float64 and prog.device.type == "cpu" and prog.dim() == 1
    children = [contract.node("STEP", {"step_size": 3, "gamma": 0.5}), contract.node("EXPONENTIAL", {"gamma": 0.9})]
    assert prog.tolist() == contract.node("SEQUENTIAL", {"count": 2}, tail=[4], children=children)
    prog.zero_()  # a fresh tensor: the caller's to change
    assert schedule.program(0, 1).tolist() == contract.node("SEQUENTIAL", {"count": 2}, tail=[4], children=children)
    with pytest.raises(ValueError, match="group_index"):
        S.StepLR(3).program(2, 2)
    with pytest.raises(ValueError, match="Expected 3 lr_lambdas, but got 2"):
        S.LambdaLR([lambda k: 1.0, lambda k: 2.0], 5).program(0, 3)
    with pytest.raises(ValueError, match="max_lr must have the same length"):
        S.OneCycleLR([0.1, 0.2], total_steps=10).program(0, 3)


def test_nesting_depth_is_bounded():
    s = S.StepLR(2)
    for _ in range(40):
        s = S.SequentialLR([S.Constant(), s], [1])  # depth costs no stack
    assert s.lr_at(45) == 0.1 ** 2
    wide = [S.ExponentialLR(0.99)] * 31
    assert S.ChainedScheduler(wide).lr_at(2) == pytest.approx(0.99 ** 62, rel=1e-12)
    with pytest.raises(ValueError, match="nesting too deep"):
        S.ChainedScheduler([S.ChainedScheduler(wide)] * 3)


def test_chained_rejects_non_multiplicative():
    for child in (S.CosineAnnealingLR(10, 0.1), S.CosineAnnealingWarmRestarts(5, eta_min=0.01),
                  S.CyclicLR(0.1, 1.0), S.OneCycleLR(1.0, total_steps=10),
                  S.get_schedule("polynomial", 2, 10)):
        with pytest.raises(ValueError, match="is not multiplicative"):
            S.ChainedScheduler([S.StepLR(2), child])
    ok = S.ChainedScheduler([S.CosineAnnealingLR(10), S.get_schedule("polynomial", 2, 10, lr_init=1.0)])
    assert ok.lr_at(6, 0.5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.6)) / 2 * ((1 - 1e-7) * 0.5 + 1e-7),
                                              rel=1e-12)


BAD = [
    (lambda: S.LambdaLR(3.0, 10), TypeError, "lr_lambda should be a function"),
    (lambda: S.LambdaLR(lambda k: 1.0, 0), ValueError, "positive integer total_steps"),
    (lambda: S.LambdaLR(lambda k: math.nan, 3), ValueError, r"lr_lambda\(0\) returned nan"),
    (lambda: S.MultiplicativeLR("x", 10), TypeError, "lr_lambda should be a function"),
    (lambda: S.StepLR(0), ValueError, "positive integer step_size"),
    (lambda: S.StepLR(2.5), ValueError, "positive integer step_size"),
    (lambda: S.StepLR(2, "0.1"), TypeError, "gamma"),
    (lambda: S.MultiStepLR([1, -2]), ValueError, "milestones must be non-negative integers"),
    (lambda: S.MultiStepLR(5), TypeError, "milestones must be an iterable"),
    (lambda: S.ConstantLR(1.5), ValueError, "Constant multiplicative factor expected to be between 0 and 1"),
    (lambda: S.ConstantLR(0.5, -1), ValueError, "total_iters"),
    (lambda: S.LinearLR(0.0), ValueError, "start_factor"),
    (lambda: S.LinearLR(0.5, 1.5), ValueError, "end_factor"),
    (lambda: S.LinearLR(total_iters=0), ValueError, "positive integer total_iters"),
    (lambda: S.ExponentialLR(None), TypeError, "gamma"),
    (lambda: S.ExponentialLR(math.inf), ValueError, "finite gamma"),
    (lambda: S.PolynomialLR(0), ValueError, "positive integer total_iters"),
    (lambda: S.PolynomialLR(5, "2"), TypeError, "power"),
    (lambda: S.CosineAnnealingLR(0), ValueError, "positive integer T_max"),
    (lambda: S.CosineAnnealingLR(10.0), ValueError, "positive integer T_max"),
    (lambda: S.CosineAnnealingWarmRestarts(0), ValueError, "Expected positive integer T_0"),
    (lambda: S.CosineAnnealingWarmRestarts(5, 0), ValueError, "Expected integer T_mult >= 1"),
    (lambda: S.CosineAnnealingWarmRestarts(5, 1, "0"), ValueError, "Expected float or int eta_min"),
    (lambda: S.CyclicLR(0.1, 1.0, mode="tri"), ValueError, "mode is invalid and scale_fn is None"),
    (lambda: S.CyclicLR(0.1, 1.0, step_size_up=0), ValueError, "positive integer step_size_up"),
    (lambda: S.CyclicLR(0.1, 1.0, scale_fn=lambda x: 1.0, scale_mode="epoch"), ValueError, "scale_mode"),
    (lambda: S.CyclicLR(0.1, [1.0, "a"]), TypeError, r"max_lr\[1\]"),
    (lambda: S.OneCycleLR(1.0), ValueError, "You must define either total_steps OR"),
    (lambda: S.OneCycleLR(1.0, total_steps=0), ValueError, "Expected positive integer total_steps"),
    (lambda: S.OneCycleLR(1.0, epochs=0, steps_per_epoch=3), ValueError, "Expected positive integer epochs"),
    (lambda: S.OneCycleLR(1.0, epochs=2, steps_per_epoch=-1), ValueError,
     "Expected positive integer steps_per_epoch"),
    (lambda: S.OneCycleLR(1.0, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
    (lambda: S.OneCycleLR(1.0, total_steps=10, anneal_strategy="exp"), ValueError, "anneal_strategy"),
    (lambda: S.ReduceLROnPlateau(factor=1.0), ValueError, r"Factor should be < 1\.0"),
    (lambda: S.ReduceLROnPlateau(mode="avg"), ValueError, "mode avg is unknown"),
    (lambda: S.ReduceLROnPlateau(threshold_mode="x"), ValueError, "threshold mode x is unknown"),
    (lambda: S.ReduceLROnPlateau(patience=-1), ValueError, "patience"),
    (lambda: S.SequentialLR([], []), ValueError, "at least one schedule"),
    (lambda: S.SequentialLR([S.StepLR(2), S.StepLR(3)], []), ValueError, "number of milestones"),
    (lambda: S.SequentialLR([S.StepLR(2), S.StepLR(3), S.StepLR(4)], [5, 5]), ValueError,
     "strictly increasing"),
    (lambda: S.SequentialLR([S.StepLR(2), "x"], [3]), TypeError, "index 1"),
    (lambda: S.ChainedScheduler(S.StepLR(2)), TypeError, "list of schedules"),
    (lambda: S.ChainedScheduler([]), ValueError, "at least one schedule"),
    (lambda: S.StepLR(2).per_epoch(0), ValueError, "positive integer steps_per_epoch"),
    (lambda: S.StepLR(2).lrs(-1), ValueError, "num_steps"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[2] for c in BAD])
def test_bad_arguments_raise_clearly(case):
    make, exc, match = case
    with pytest.raises(exc, match=match):
        make()


def test_plot_writes_png(tmp_path):
    cases = {
        "one": S.CosineAnnealingLR(20),
        "list": [S.StepLR(5), S.OneCycleLR(1.0, total_steps=40)],
        "dict": {"cyclic": S.CyclicLR(0.1, 1.0, 5), "warmup": S.get_schedule("linear", 5, 40)},
    }
    for name, scheds in cases.items():
        path = tmp_path / f"{name}.png"
        S.plot(scheds, 40, path, base_lr=0.5)
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="at least one schedule"):
        S.plot({}, 10, tmp_path / "none.png")


def test_gallery_draws_every_policy(tmp_path):
    from lrfused import gallery

    entries = gallery.entries()
    names = [n for n, _ in entries]
    for cls in ("LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
                "ExponentialLR", "PolynomialLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR",
                "OneCycleLR", "ReduceLROnPlateau", "SequentialLR", "ChainedScheduler"):
        assert any(n.startswith(cls) for n in names), cls
    for hf in S.HF_NAMES:
        assert any(n == f"hf: {hf}" for n in names), hf
    out = tmp_path / "gallery.png"
    gallery.main([str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_clamp_and_restart_arguments():
    with pytest.raises(ValueError, match="min_lr, max_lr"):
        S.StepLR(2).clamp()
    with pytest.raises(ValueError, match="min_lr .* must not exceed max_lr"):
        S.StepLR(2).clamp(0.5, 0.1)
    with pytest.raises(TypeError, match="min_lr"):
        S.StepLR(2).clamp("0.1")
    with pytest.raises(ValueError, match="period"):
        S.StepLR(2).restart(0)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        S.ReduceLROnPlateau().clamp(0.1)
    with pytest.raises(ValueError, match="not multiplicative"):
        S.ChainedScheduler([S.StepLR(2).clamp(0.1), S.StepLR(3)])
    assert S.ChainedScheduler([S.StepLR(2).restart(5), S.StepLR(3)]).lrs(12).tolist() == \
        [0.1 ** ((k % 5) // 2) * 0.1 ** (k // 3) for k in range(12)]
    one_cycle = S.OneCycleLR(1.0, total_steps=10)
    assert one_cycle.restart(one_cycle.max_step() + 1).max_step() is None  # restarts before its end: never past
    assert one_cycle.restart(one_cycle.max_step() + 2).max_step() == one_cycle.max_step()


def test_a_wrapper_around_a_leaf_needs_two_frames():
    """CLAMP keeps a frame under its child: a raw program whose CHAINED children would need one frame more
    than the evaluator has is refused (it once passed the check and evaluated without the clamp)."""
    import lrfused
    from lrfused import contract

    def chained(n):
        clamp = contract.node("CLAMP", {"min_lr": 0.0, "max_lr": 0.25},
                              children=[contract.node("EXPONENTIAL", {"gamma": 0.5})])
        rest = [contract.node("EXPONENTIAL", {"gamma": 1.0}) for _ in range(n - 1)]
        return torch.tensor(contract.node("CHAINED", {"count": n}, children=[clamp] + rest), dtype=torch.float64)

    with pytest.raises(RuntimeError, match="kMaxStack"):
        lrfused._ops._C.check_program(chained(contract.MAX_STACK))
    lrfused._ops._C.check_program(chained(contract.MAX_STACK - 1))
    lrs = torch.ops.lrfused.schedule_lrs(chained(contract.MAX_STACK - 1), torch.arange(4), 1.0)
    assert lrs.tolist() == [0.25, 0.25, 0.25, 0.125]
