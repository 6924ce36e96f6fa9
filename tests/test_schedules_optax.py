"""optax's schedules (lrfused.schedules.optax) against optax.schedules running live under jax (fp64:
jax_enable_x64), count by count past their ends; an optimizer driven by optax's values; a resume in the
middle; bad arguments."""
import pytest

import lrfused
from lrfused import schedules as S

from schedule_oracles import assert_resume_is_exact, assert_schedule_lrs, run_against_recorded

optax = pytest.importorskip("optax", reason="optax is not installed (make venv installs it)")
jax = pytest.importorskip("jax")


@pytest.fixture(autouse=True, scope="module")
def _x64():
    jax.config.update("jax_enable_x64", True)  # optax in float64, as lrfused evaluates
    yield
    jax.config.update("jax_enable_x64", False)


# (function name, args, kwargs, counts)
CASES = {
    "constant": ("constant_schedule", (0.3,), {}, 5),
    "polynomial": ("polynomial_schedule", (1.0, 0.01, 2.0, 20), dict(transition_begin=5), 35),
    "polynomial-no-steps": ("polynomial_schedule", (1.0, 0.01, 2.0, 0), {}, 5),
    "polynomial-negative-begin": ("polynomial_schedule", (1.0, 0.0, 0.5, 10), dict(transition_begin=-3), 15),
    "linear": ("linear_schedule", (0.0, 0.5, 12), dict(transition_begin=2), 20),
    "piecewise-constant": ("piecewise_constant_schedule", (0.1, {5: 0.5, 12: 0.1, 20: 2.0}), {}, 25),
    "exponential": ("exponential_decay", (1.0, 5, 0.5), {}, 30),
    "exponential-staircase-begin-end": ("exponential_decay", (1.0, 4, 0.7),
                                        dict(transition_begin=6, staircase=True, end_value=0.2), 40),
    "exponential-growth-end": ("exponential_decay", (0.1, 3, 1.5), dict(end_value=1.0), 30),
    "exponential-zero-rate": ("exponential_decay", (0.4, 3, 0.0), {}, 5),
    "cosine-decay": ("cosine_decay_schedule", (1.0, 20), dict(alpha=0.1, exponent=2.0), 30),
    "piecewise-interpolate-linear": ("piecewise_interpolate_schedule", ("linear", 0.1, {4: 10.0, 10: 0.5, 16: 0.01}),
                                     {}, 22),
    "piecewise-interpolate-cosine": ("piecewise_interpolate_schedule", ("cosine", 0.1, {0: 2.0, 7: 5.0, 9: 0.2}),
                                     {}, 15),
    "piecewise-interpolate-empty": ("piecewise_interpolate_schedule", ("linear", 0.3, {}), {}, 4),
    "linear-onecycle": ("linear_onecycle_schedule", (30, 0.5), {}, 40),
    "cosine-onecycle": ("cosine_onecycle_schedule", (25, 0.5), dict(pct_start=0.2), 35),
    "warmup-constant": ("warmup_constant_schedule", (0.0, 0.4, 6), {}, 12),
    "warmup-cosine-decay": ("warmup_cosine_decay_schedule", (0.0, 1.0, 5, 30), dict(end_value=0.05, exponent=1.5),
                            40),
    "warmup-cosine-no-warmup": ("warmup_cosine_decay_schedule", (0.0, 1.0, 0, 20), {}, 25),
    "warmup-exponential": ("warmup_exponential_decay_schedule", (0.01, 1.0, 4, 6, 0.5),
                           dict(transition_begin=2, staircase=True, end_value=0.1), 40),
    "sgdr": ("sgdr_schedule", ([dict(init_value=0.0, peak_value=1.0, warmup_steps=2, decay_steps=8),
                                dict(init_value=0.1, peak_value=0.5, warmup_steps=3, decay_steps=12, end_value=0.05)],),
             {}, 25),
}


def _optax_values(fn, args, kwargs, n):
    sched = getattr(optax.schedules, fn)(*args, **kwargs)
    return [[float(sched(k))] for k in range(n)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_optax_matches_live(case):
    fn, args, kwargs, n = CASES[case]
    expected = _optax_values(fn, args, kwargs, n)
    assert_schedule_lrs(getattr(S.optax, fn)(*args, **kwargs), expected, [0.123], f"optax.{fn}")


def test_join_schedules_of_anything():
    """join_schedules takes any lrfused schedules (optax's, torch's, timm's): each restarts at its boundary."""
    lrf = S.optax.join_schedules([S.optax.linear_schedule(0.0, 1.0, 4), S.optax.exponential_decay(1.0, 2, 0.5),
                                  S.optax.constant_schedule(0.05)], [4, 10])
    ref = optax.schedules.join_schedules([optax.schedules.linear_schedule(0.0, 1.0, 4),
                                          optax.schedules.exponential_decay(1.0, 2, 0.5),
                                          optax.schedules.constant_schedule(0.05)], [4, 10])
    assert_schedule_lrs(lrf, [[float(ref(k))] for k in range(16)], [1.0], "join_schedules")
    mixed = S.optax.join_schedules([S.optax.linear_schedule(0.0, 1.0, 4), S.CosineAnnealingLR(10)], [4])
    assert mixed.lr_at(4, 0.3) == pytest.approx(0.3)


def test_values_are_absolute_for_every_group():
    s = S.optax.cosine_decay_schedule(0.5, 10)
    assert s.lrs(12, 0.1).tolist() == s.lrs(12, 7.0).tolist()


@pytest.mark.parametrize("case", ["warmup-cosine-decay", "exponential-staircase-begin-end", "sgdr"])
def test_optimizer_follows_optax(case):
    fn, args, kwargs, n = CASES[case]
    values = _optax_values(fn, args, kwargs, n)
    lrs = [row * 2 for row in values]  # the same value for both groups
    run_against_recorded(lrfused.AdamW, getattr(S.optax, fn)(*args, **kwargs), lrs, [0.1, 0.2], weight_decay=0.05)


def test_resume_in_the_middle():
    fn, args, kwargs, _ = CASES["sgdr"]
    assert_resume_is_exact(lrfused.SGD, getattr(S.optax, fn)(*args, **kwargs), [0.1, 0.2], steps=24, momentum=0.9)


@pytest.mark.parametrize("fn,args,kwargs", [
    ("cosine_decay_schedule", (1.0, 0), {}),
    ("piecewise_constant_schedule", (1.0, {3: -0.5}), {}),
    ("piecewise_interpolate_schedule", ("cubic", 1.0, {3: 0.5}), {}),
    ("piecewise_interpolate_schedule", ("linear", 1.0, {3: -0.5}), {}),
    ("linear_onecycle_schedule", (0, 1.0), {}),
    ("cosine_onecycle_schedule", (-2, 1.0), {}),
    ("warmup_cosine_decay_schedule", (0.0, 1.0, 10, 10), {}),
])
def test_bad_arguments_raise_what_optax_raises(fn, args, kwargs):
    with pytest.raises(ValueError) as ours:
        getattr(S.optax, fn)(*args, **kwargs)
    with pytest.raises(ValueError) as theirs:
        getattr(optax.schedules, fn)(*args, **kwargs)
    assert str(ours.value).split()[0:2] == str(theirs.value).split()[0:2]
