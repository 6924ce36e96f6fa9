"""Randomized parity: hypothesis draws the optimizer, its options, dtype, tensor count and shapes, a
schedule (possibly composed with SequentialLR / ChainedScheduler) and the step count; lrfused runs
next to torch.optim (foreach=False) + the equivalent live torch scheduler and every parameter, state
tensor and lr is compared after every step (tolerances: lrfused.testing.TOLERANCE).

LRFUSED_HYPOTHESIS_EXAMPLES sets the number of examples (default 60, well under a minute).
"""
import os
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as L

from lrfused import schedules as S

from optim_helpers import ScheduleSpec, run_parity

MAX_EXAMPLES = int(os.environ.get("LRFUSED_HYPOTHESIS_EXAMPLES", "60"))


def _unit(lo, hi):
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


class _Table:
    """A picklable lr_lambda: a random table, repeated."""

    def __init__(self, values):
        self.values = list(values)

    def __call__(self, k):
        return self.values[k % len(self.values)]


# Each leaf draw returns (name, torch_fn(opt), lrf_fn(), max_lr_factor). The families allowed as a
# SequentialLR child are those whose torch scheduler restarts from its closed form at step 0 (torch's
# SequentialLR calls child.step(0)); ChainedScheduler children are the multiplicative ones.
@st.composite
def leaf_schedule(draw, for_chain=False):
    kinds = ["StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR"]
    if not for_chain:
        kinds += ["CosineAnnealingLR", "LambdaLR"]
    kind = draw(st.sampled_from(kinds))
    if kind == "StepLR":
        kw = dict(step_size=draw(st.integers(1, 20)), gamma=draw(_unit(0.1, 1.0)))
    elif kind == "MultiStepLR":
        kw = dict(milestones=sorted(draw(st.lists(st.integers(1, 60), min_size=1, max_size=4))), gamma=draw(_unit(0.1, 1.0)))
    elif kind == "ConstantLR":
        kw = dict(factor=draw(_unit(0.05, 1.0)), total_iters=draw(st.integers(1, 30)))
    elif kind == "LinearLR":
        kw = dict(start_factor=draw(_unit(0.01, 1.0)), end_factor=draw(_unit(0.0, 1.0)), total_iters=draw(st.integers(1, 30)))
    elif kind == "ExponentialLR":
        kw = dict(gamma=draw(_unit(0.8, 1.0)))
    elif kind == "PolynomialLR":
        kw = dict(total_iters=draw(st.integers(1, 40)), power=draw(_unit(0.5, 3.0)))
    elif kind == "CosineAnnealingLR":
        kw = dict(T_max=draw(st.integers(1, 50)), eta_min=draw(st.sampled_from([0.0, 1e-4, 2e-3])))
    else:  # LambdaLR
        table = _Table(draw(st.lists(_unit(0.0, 2.0), min_size=1, max_size=7)))
        return (kind, lambda o: L.LambdaLR(o, table), lambda n: S.LambdaLR(table, total_steps=n), 2.0)
    return (kind, lambda o: getattr(L, kind)(o, **kw), lambda n: getattr(S, kind)(**kw), 1.0)


@st.composite
def schedule_spec(draw, opt_name, steps, options):
    # SGD(momentum=0) + momentum cycling: see test_optim_parity.test_momentum_cycling_overrides_constructor_momentum
    can_cycle = opt_name != "SGD" or options["momentum"] > 0
    top = draw(st.sampled_from(["leaf", "leaf", "SequentialLR", "ChainedScheduler", "CosineAnnealingWarmRestarts",
                                "CyclicLR", "OneCycleLR", "ReduceLROnPlateau", "constant"]))
    base_lr = 0.05
    if top == "constant":
        return ScheduleSpec("constant", None, None)
    if top == "leaf":
        name, tf, lf, m = draw(leaf_schedule())
        return ScheduleSpec(name, lambda o, n: tf(o), lf, max_lr=base_lr * m)
    if top == "SequentialLR":
        kids = draw(st.lists(leaf_schedule(), min_size=2, max_size=3))
        ms = sorted(draw(st.lists(st.integers(1, 50), min_size=len(kids) - 1, max_size=len(kids) - 1, unique=True)))
        return ScheduleSpec(
            "SequentialLR[" + ",".join(k[0] for k in kids) + f"]@{ms}",
            lambda o, n: L.SequentialLR(o, [k[1](o) for k in kids], milestones=ms),
            lambda n: S.SequentialLR([k[2](n) for k in kids], milestones=ms),
            max_lr=base_lr * max(k[3] for k in kids),
        )
    if top == "ChainedScheduler":
        kids = draw(st.lists(leaf_schedule(for_chain=True), min_size=2, max_size=3))
        return ScheduleSpec(
            "ChainedScheduler[" + ",".join(k[0] for k in kids) + "]",
            lambda o, n: L.ChainedScheduler([k[1](o) for k in kids]),
            lambda n: S.ChainedScheduler([k[2](n) for k in kids]),
            max_lr=base_lr,
        )
    if top == "CosineAnnealingWarmRestarts":
        kw = dict(T_0=draw(st.integers(1, 20)), T_mult=draw(st.integers(1, 3)), eta_min=draw(st.sampled_from([0.0, 1e-3])))
        return ScheduleSpec(f"CosineAnnealingWarmRestarts{kw}", lambda o, n: L.CosineAnnealingWarmRestarts(o, **kw),
                            lambda n: S.CosineAnnealingWarmRestarts(**kw))
    if top == "CyclicLR":
        kw = dict(
            base_lr=draw(_unit(1e-3, 1e-2)), max_lr=draw(_unit(2e-2, 0.1)), step_size_up=draw(st.integers(1, 20)),
            step_size_down=draw(st.one_of(st.none(), st.integers(1, 20))),
            mode=draw(st.sampled_from(["triangular", "triangular2", "exp_range"])), gamma=draw(_unit(0.9, 1.0)),
            cycle_momentum=can_cycle and draw(st.booleans()), base_momentum=draw(_unit(0.5, 0.85)),
            max_momentum=draw(_unit(0.86, 0.95)),
        )
        return ScheduleSpec(f"CyclicLR{kw}", lambda o, n: L.CyclicLR(o, **kw), lambda n: S.CyclicLR(**kw),
                            cycles_momentum=kw["cycle_momentum"], max_lr=0.1)
    if top == "OneCycleLR":
        three = draw(st.booleans())
        kw = dict(
            max_lr=draw(_unit(0.01, 0.1)), total_steps=steps + draw(st.integers(10, 40)),
            pct_start=draw(st.sampled_from([0.2, 0.25, 0.3, 0.4] + ([] if three else [0.5, 0.6]))),
            anneal_strategy=draw(st.sampled_from(["cos", "linear"])), three_phase=three,
            cycle_momentum=can_cycle and draw(st.booleans()), div_factor=draw(_unit(2.0, 50.0)), final_div_factor=draw(_unit(10.0, 1e4)),
        )
        return ScheduleSpec(f"OneCycleLR{kw}", lambda o, n: L.OneCycleLR(o, **kw), lambda n: S.OneCycleLR(**kw),
                            cycles_momentum=kw["cycle_momentum"], max_lr=0.1)
    # ReduceLROnPlateau, with a metric that repeats values so that stalls happen
    kw = dict(
        mode=draw(st.sampled_from(["min", "max"])), factor=draw(_unit(0.1, 0.9)), patience=draw(st.integers(0, 5)),
        threshold=draw(st.sampled_from([0.0, 1e-4, 1e-2])), threshold_mode=draw(st.sampled_from(["rel", "abs"])),
        cooldown=draw(st.integers(0, 3)), min_lr=draw(st.sampled_from([0.0, 1e-3])),
    )
    rng = random.Random(draw(st.integers(0, 2 ** 16)))
    metrics = [round(rng.uniform(0.0, 1.0), 1) for _ in range(steps)]
    return ScheduleSpec(f"ReduceLROnPlateau{kw}", lambda o, n: L.ReduceLROnPlateau(o, **kw),
                        lambda n: S.ReduceLROnPlateau(**kw), plateau=True, metric=lambda k: metrics[k])


@st.composite
def options_for(draw, opt_name):
    if opt_name == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.5, 0.9, 0.95]))
        nesterov = momentum > 0 and draw(st.booleans())
        dampening = 0.0 if nesterov else draw(st.sampled_from([0.0, 0.1, 0.5]))
        return dict(momentum=momentum, dampening=dampening, nesterov=nesterov,
                    weight_decay=draw(st.sampled_from([0.0, 1e-3, 0.1])), maximize=draw(st.booleans()))
    return dict(
        betas=(draw(_unit(0.0, 0.99)), draw(_unit(0.5, 0.9999))), eps=draw(st.sampled_from([1e-8, 1e-6, 1e-3])),
        weight_decay=draw(st.sampled_from([0.0, 1e-3, 0.1])), amsgrad=draw(st.booleans()), maximize=draw(st.booleans()),
    )


shape_st = st.lists(st.integers(0, 12), min_size=1, max_size=3).map(tuple)


@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_random_parity(data):
    opt_name = data.draw(st.sampled_from(["SGD", "Adam", "AdamW"]), label="optimizer")
    options = data.draw(options_for(opt_name), label="options")
    dtype = data.draw(st.sampled_from([torch.float64, torch.float32]), label="dtype")
    shapes = data.draw(st.lists(shape_st, min_size=1, max_size=5), label="shapes")
    steps = data.draw(st.integers(1, 60), label="steps")
    spec = data.draw(schedule_spec(opt_name, steps, options), label="schedule")
    seed = data.draw(st.integers(0, 2 ** 16), label="seed")
    run_parity(opt_name, options, spec, dtype=dtype, steps=steps, shapes=shapes, lr=0.05, seed=seed)
