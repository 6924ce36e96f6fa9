"""DeepSpeed's schedules (lrfused.schedules.deepspeed, S.from_deepspeed) against
deepspeed.runtime.lr_schedules running live: lrs (and OneCycle's beta1) at every step of DeepSpeed's loop
(scheduler.step() after each optimizer step), past the end, per-group lists, config dicts; an optimizer
driven by DeepSpeed's lrs; a resume in the middle; bad arguments."""
import pytest

import lrfused
from lrfused import schedules as S

from schedule_oracles import (assert_resume_is_exact, assert_schedule_lrs, deepspeed_lr_schedules, record,
                              run_against_recorded, torch_optimizer)

GROUP_LRS = [0.1, 0.03]

CASES = {
    "warmup-log-default-max": ("WarmupLR", dict(warmup_min_lr=1e-4, warmup_num_steps=10), 20),
    "warmup-linear-lists": ("WarmupLR", dict(warmup_min_lr=[1e-4, 1e-3], warmup_max_lr=[0.2, 0.05],
                                             warmup_num_steps=8, warmup_type="linear"), 20),
    "warmup-one-step": ("WarmupLR", dict(warmup_num_steps=1), 6),
    "warmup-decay-log": ("WarmupDecayLR", dict(total_num_steps=30, warmup_min_lr=0.0, warmup_max_lr=0.05,
                                               warmup_num_steps=6), 40),
    "warmup-decay-linear": ("WarmupDecayLR", dict(total_num_steps=25, warmup_max_lr=[0.1, 0.2],
                                                  warmup_num_steps=5, warmup_type="linear"), 35),
    "warmup-cosine-log": ("WarmupCosineLR", dict(total_num_steps=40, warmup_num_steps=8), 50),
    "warmup-cosine-linear": ("WarmupCosineLR", dict(total_num_steps=30, warmup_min_ratio=0.1, warmup_num_steps=5,
                                                    cos_min_ratio=0.05, warmup_type="linear"), 40),
    "range-test": ("LRRangeTest", dict(lr_range_test_min_lr=1e-4, lr_range_test_step_size=5,
                                       lr_range_test_step_rate=2.0), 30),
    "range-test-staircase-lists": ("LRRangeTest", dict(lr_range_test_min_lr=[1e-4, 1e-3],
                                                       lr_range_test_step_size=4, lr_range_test_staircase=True), 30),
    "one-cycle": ("OneCycle", dict(cycle_min_lr=0.01, cycle_max_lr=0.1, cycle_first_step_size=6), 20),
    "one-cycle-decay": ("OneCycle", dict(cycle_min_lr=[0.01, 0.002], cycle_max_lr=[0.1, 0.05], decay_lr_rate=0.5,
                                         cycle_first_step_size=5, cycle_second_step_size=7, decay_step_size=3,
                                         cycle_min_mom=0.85, cycle_max_mom=0.95, decay_mom_rate=0.1), 40),
    "one-cycle-stairs": ("OneCycle", dict(cycle_min_lr=0.01, cycle_max_lr=0.1, cycle_first_step_size=8,
                                          cycle_first_stair_count=4, cycle_second_stair_count=2,
                                          decay_lr_rate=0.2, decay_step_size=4), 35),
}


def _ds_run(name, kw, n, opt_kind="adam"):
    ds = deepspeed_lr_schedules()
    opt = torch_optimizer(GROUP_LRS, opt_kind)
    sched = getattr(ds, name)(opt, **kw)
    key = "betas" if opt_kind == "adam" else "momentum"
    lrs, moms = record(opt, n, lambda k: sched.step(), momentum_key=key)
    return sched, lrs, moms


@pytest.mark.parametrize("case", sorted(CASES))
def test_deepspeed_matches_live(case):
    name, kw, n = CASES[case]
    sched, lrs, moms = _ds_run(name, kw, n)
    converted = S.from_deepspeed(sched)
    direct = getattr(S.deepspeed, name)(**kw)
    from_config = S.from_deepspeed({"type": name, "params": kw})
    cycles = name == "OneCycle"
    for s, how in ((converted, "from_deepspeed"), (direct, "direct"), (from_config, "config")):
        assert s.cycles_momentum == cycles
        assert_schedule_lrs(s, lrs, GROUP_LRS, f"{how} {case}", momenta=moms if cycles else None, fallback=0.9)


def test_one_cycle_on_sgd_keeps_momentum_as_deepspeed_does():
    """DeepSpeed turns the momentum cycle off for an optimizer without betas; from_deepspeed follows."""
    sched, lrs, moms = _ds_run("OneCycle", CASES["one-cycle"][1], 20, opt_kind="sgd")
    s = S.from_deepspeed(sched)
    assert not s.cycles_momentum
    assert_schedule_lrs(s, lrs, GROUP_LRS, "OneCycle on SGD", momenta=moms, fallback=0.9)


@pytest.mark.parametrize("case", ["warmup-decay-log", "warmup-cosine-linear", "one-cycle-decay"])
def test_optimizer_follows_deepspeed(case):
    name, kw, n = CASES[case]
    sched, lrs, moms = _ds_run(name, kw, n)
    # DeepSpeed's OneCycle writes betas = (momentum, 0.99): beta2 0.99 matches it
    run_against_recorded(lrfused.Adam, S.from_deepspeed(sched), lrs, GROUP_LRS,
                         momenta=moms if name == "OneCycle" else None, betas=(0.9, 0.99))


def test_resume_in_the_middle():
    s = S.deepspeed.OneCycle([0.01, 0.002], [0.1, 0.05], decay_lr_rate=0.5, cycle_first_step_size=5,
                             decay_step_size=3, decay_mom_rate=0.002)
    assert_resume_is_exact(lrfused.AdamW, s, GROUP_LRS, steps=30)


@pytest.mark.parametrize("name,kw,match", [
    ("WarmupLR", dict(warmup_num_steps=0), "warmup_num_steps"),
    ("WarmupCosineLR", dict(total_num_steps=10, warmup_num_steps=2.5), "warmup_num_steps"),
    ("LRRangeTest", dict(lr_range_test_step_size=0), "lr_range_test_step_size"),
    ("OneCycle", dict(cycle_min_lr=0.1, cycle_max_lr=1.0, cycle_first_step_size=0), "cycle_first_step_size"),
    ("OneCycle", dict(cycle_min_lr=0.1, cycle_max_lr=1.0, cycle_second_step_size=-1), "cycle_second_step_size"),
])
def test_bad_arguments_raise_what_deepspeed_raises(name, kw, match):
    ds = deepspeed_lr_schedules()
    with pytest.raises(ValueError, match=match):
        getattr(ds, name)(torch_optimizer(GROUP_LRS), **kw)
    with pytest.raises(ValueError, match=match):
        getattr(S.deepspeed, name)(**kw)


def test_per_group_lists_must_match_the_groups():
    p = [lrfused.SGD([{"params": [q]} for q in _params(2)], lr=0.1,
                     schedule=S.deepspeed.LRRangeTest([1e-3, 1e-2]))]
    assert p[0].param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="lr_range_test_min_lr"):
        lrfused.SGD([{"params": [q]} for q in _params(3)], lr=0.1, schedule=S.deepspeed.LRRangeTest([1e-3, 1e-2]))


def _params(n):
    import torch
    return [torch.nn.Parameter(torch.zeros(3)) for _ in range(n)]


def test_from_deepspeed_reads_configuration_not_position_and_refuses_unknown_types():
    sched, _, _ = _ds_run("WarmupLR", CASES["warmup-log-default-max"][1], 3)
    assert sched.last_batch_iteration == 2
    assert S.from_deepspeed(sched).lr_at(0, group=0) == CASES["warmup-log-default-max"][1]["warmup_min_lr"]
    with pytest.raises(ValueError, match="unknown scheduler type"):
        S.from_deepspeed({"type": "Cosine", "params": {}})
    with pytest.raises(TypeError, match="from_deepspeed"):
        S.from_deepspeed(object())
