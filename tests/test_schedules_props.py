"""Property tests: random configurations against the closed forms (fp64, 1e-12 relative), and the
composites against composing their children by hand."""
import math

from hypothesis import given, settings, strategies as st

from lrfused import schedules as S

SET = settings(max_examples=60, deadline=None)


def close(a, e, b):
    return abs(a - e) <= 1e-12 * abs(e) + 1e-15 * b


@SET
@given(T0=st.integers(1, 50), mult=st.integers(1, 4), eta=st.floats(0, 0.05), b=st.floats(0.1, 2.0),
       ks=st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=10))
def test_warm_restarts_at_large_steps(T0, mult, eta, b, ks):
    s = S.CosineAnnealingWarmRestarts(T0, mult, eta)
    for k in ks:
        t_cur, t_i = k, T0
        while t_cur >= t_i:
            t_cur -= t_i
            t_i *= mult
        assert close(s.lr_at(k, b), eta + (b - eta) * (1 + math.cos(math.pi * t_cur / t_i)) / 2, b)


@SET
@given(up=st.integers(1, 40), down=st.integers(1, 40), lo=st.floats(0.001, 0.1), span=st.floats(0.01, 1.0),
       mode=st.sampled_from(["triangular", "triangular2", "exp_range"]), gamma=st.floats(0.9, 1.0),
       ks=st.lists(st.integers(0, 5000), min_size=1, max_size=10))
def test_cyclic_random(up, down, lo, span, mode, gamma, ks):
    hi = lo + span
    s = S.CyclicLR(lo, hi, up, down, mode=mode, gamma=gamma)
    total = float(up + down)
    for k in ks:
        cycle = math.floor(1 + k / total)
        x = 1.0 + k / total - cycle
        r = up / total
        f = x / r if x <= r else (x - 1) / (r - 1)
        g = 1.0 if mode == "triangular" else (0.5 ** (cycle - 1) if mode == "triangular2" else gamma ** k)
        assert close(s.lr_at(k), lo + (hi - lo) * f * g, hi)
        assert close(s.momentum_at(k), 0.9 - (0.9 - 0.8) * f * g, 1.0)


CHILDREN = st.sampled_from([S.StepLR(3, 0.5), S.ExponentialLR(0.95), S.LinearLR(0.2, 1.0, 7),
                            S.CosineAnnealingLR(9), S.ConstantLR(0.5, 4), S.PolynomialLR(12, 2.0),
                            S.MultiStepLR([2, 5, 11]), S.get_schedule("cosine", 3, 20)])


@SET
@given(children=st.lists(CHILDREN, min_size=1, max_size=4), gaps=st.lists(st.integers(1, 15), min_size=3,
                                                                            max_size=3),
       spe=st.integers(1, 5), b=st.floats(0.01, 1.0))
def test_composites_compose_their_children(children, gaps, spe, b):
    milestones = [sum(gaps[:i + 1]) for i in range(len(children) - 1)]
    seq = S.SequentialLR(children, milestones)
    chained = S.ChainedScheduler(children)
    n = 60
    lrs_seq, lrs_chain, lrs_epoch = seq.lrs(n, b).tolist(), chained.lrs(n, b).tolist(), \
        seq.per_epoch(spe).lrs(n, b).tolist()
    for k in range(n):
        i = sum(m <= k for m in milestones)
        start = ([0] + milestones)[i]
        assert lrs_seq[k] == children[i].lr_at(k - start, b)
        expected = b
        for c in children:
            expected *= c.lr_at(k, 1.0)
        assert close(lrs_chain[k], expected, b)
        assert lrs_epoch[k] == seq.lr_at(k // spe, b)


WRAPPED = st.sampled_from([S.StepLR(3, 0.5), S.CosineAnnealingLR(9, 0.01), S.OneCycleLR(1.0, total_steps=40),
                           S.CyclicLR(0.1, 1.0, 3, 5), S.get_schedule("cosine", 3, 20),
                           S.optax.warmup_cosine_decay_schedule(0.0, 1.0, 4, 30),
                           S.timm.CosineLRScheduler(7, cycle_limit=3, t_in_epochs=False, noise_range_t=[2, 20]),
                           S.deepspeed.OneCycle(0.1, 1.0, cycle_first_step_size=4, decay_lr_rate=0.3,
                                                decay_step_size=2)])


@SET
@given(child=WRAPPED, lo=st.one_of(st.none(), st.floats(0.0, 0.5)), span=st.one_of(st.none(), st.floats(0.0, 1.0)),
       period=st.integers(1, 25), outer=st.integers(1, 7), b=st.floats(0.01, 1.0))
def test_clamp_and_restart_wrap_any_schedule(child, lo, span, period, outer, b):
    """Clamp is min/max of the child's lr (momentum untouched); Restart is the child at k mod period (lr and
    momentum); both nest in each other and in the composites."""
    hi = None if span is None else (lo or 0.0) + span
    n = 80
    lrs = child.lrs(n, b).tolist()
    moms = child.momenta(n, 0.5).tolist()
    if lo is not None or hi is not None:
        clamped = S.Clamp(child, lo, hi)
        assert clamped.momenta(n, 0.5).tolist() == moms
        for k, (x, v) in enumerate(zip(clamped.lrs(n, b).tolist(), lrs)):
            assert x == min(hi if hi is not None else math.inf, max(lo if lo is not None else -math.inf, v)), k
        nested = S.Restart(clamped, period).per_epoch(outer)
        for k, x in enumerate(nested.lrs(n, b).tolist()):
            assert x == clamped.lr_at((k // outer) % period, b)
    restarted = child.restart(period)
    assert restarted.lrs(n, b).tolist() == [lrs[k % period] for k in range(n)]
    assert restarted.momenta(n, 0.5).tolist() == [moms[k % period] for k in range(n)]
    seq = S.SequentialLR([S.ConstantLR(0.5, 3), restarted], [3])
    assert seq.lrs(n, b).tolist()[3:] == [lrs[k % period] for k in range(n - 3)]
