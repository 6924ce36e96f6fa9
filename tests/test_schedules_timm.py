"""timm's schedulers (lrfused.schedules.timm, S.from_timm) against timm.scheduler running live: per-update and
per-epoch stepping, warmups, cycles, k_decay, noise, several param groups, past the end; an optimizer driven
by timm's lrs; a resume in the middle; bad arguments."""
import pytest
import torch

import lrfused
from lrfused import schedules as S

from schedule_oracles import (assert_resume_is_exact, assert_schedule_lrs, record, run_against_recorded,
                              timm_scheduler, torch_optimizer)

GROUP_LRS = [0.1, 0.03]

# (timm class name, kwargs, steps): t runs past every schedule's end
CASES = {
    "cosine-warmup": ("CosineLRScheduler", dict(t_initial=20, lr_min=1e-5, warmup_t=3, warmup_lr_init=1e-4), 40),
    "cosine-cycles-mul": ("CosineLRScheduler", dict(t_initial=6, lr_min=1e-4, cycle_mul=2.0, cycle_decay=0.5,
                                                    cycle_limit=3, k_decay=1.5, warmup_t=2, warmup_prefix=True), 60),
    "cosine-cycles": ("CosineLRScheduler", dict(t_initial=7, cycle_decay=0.7, cycle_limit=4, k_decay=0.7), 40),
    "cosine-no-limit": ("CosineLRScheduler", dict(t_initial=5, cycle_mul=1.5, cycle_limit=0), 30),
    "tanh-warmup-to-curve": ("TanhLRScheduler", dict(t_initial=15, lr_min=1e-3, warmup_t=4, warmup_lr_init=1e-3,
                                                     cycle_mul=1.5, cycle_limit=2), 50),
    "tanh-prefix": ("TanhLRScheduler", dict(t_initial=10, lb=-5.0, ub=2.0, warmup_t=3, warmup_prefix=True,
                                            cycle_decay=0.8, cycle_limit=3), 45),
    "poly": ("PolyLRScheduler", dict(t_initial=12, power=2.0, lr_min=1e-4, k_decay=0.8, cycle_limit=2,
                                     warmup_t=2, warmup_lr_init=1e-3), 40),
    "step": ("StepLRScheduler", dict(decay_t=4, decay_rate=0.5, warmup_t=2, warmup_lr_init=1e-3), 30),
    "step-fractional-no-prefix": ("StepLRScheduler", dict(decay_t=2.5, decay_rate=0.7, warmup_t=3,
                                                         warmup_prefix=False), 30),
    "multistep": ("MultiStepLRScheduler", dict(decay_t=[5, 9, 14], decay_rate=0.3, warmup_t=2,
                                               warmup_prefix=False), 25),
    "multistep-prefix": ("MultiStepLRScheduler", dict(decay_t=[3, 8], decay_rate=0.5, warmup_t=2,
                                                      warmup_lr_init=0.01), 20),
    "cosine-noise": ("CosineLRScheduler", dict(t_initial=30, noise_range_t=[5, 25], noise_pct=0.3, noise_std=0.8,
                                               noise_seed=7), 35),
    "poly-noise-open-ended": ("PolyLRScheduler", dict(t_initial=20, noise_range_t=10, noise_seed=3), 40),
    "wsd-default": ("WSDLRScheduler", dict(t_initial=30, decay_t=10, warmup_t=3, warmup_lr_init=1e-3), 40),
    "wsd-rsqrt-exp": ("WSDLRScheduler", dict(t_initial=30, decay_t=12, lr_min=1e-4, stable_fn="rsqrt", decay_fn="exp",
                                             decay_ratio=0.05, warmup_t=4), 40),
    "wsd-power-power": ("WSDLRScheduler", dict(t_initial=25, decay_t=25, stable_fn="power", stable_timescale=5,
                                               stable_power=0.3, decay_fn="power", decay_power=2.0), 30),
    "wsd-cosine-linear-noise": ("WSDLRScheduler", dict(t_initial=20, decay_t=8, decay_fn="cosine",
                                                       noise_range_t=[3, 15], noise_pct=0.2), 25),
    "wsd-callable": ("WSDLRScheduler", dict(t_initial=20, decay_t=9, lr_min=0.005, decay_fn=lambda f: (1 - f) ** 3,
                                            warmup_t=2), 25),
}


def _timm_run(name, kw, n, t_in_epochs, steps_per_epoch=1, noise_type=None):
    """What timm's train loop (step_update after each update, step at each epoch's end) leaves in the
    optimizer for optimizer steps 0 .. n-1."""
    ts = timm_scheduler()
    opt = torch_optimizer(GROUP_LRS)
    sched = getattr(ts, name)(opt, t_in_epochs=t_in_epochs, **kw)
    if noise_type is not None:
        sched.noise_type = noise_type  # timm's base class option, not a subclass argument

    def after(k):
        sched.step_update(num_updates=k + 1)
        if (k + 1) % steps_per_epoch == 0:
            sched.step((k + 1) // steps_per_epoch)

    lrs, _ = record(opt, n, after)
    return sched, lrs


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("per", ["update", "epoch"])
def test_timm_matches_live(case, per):
    name, kw, n = CASES[case]
    spe = 3 if per == "epoch" else 1
    horizon = n if isinstance(kw.get("noise_range_t"), int) else None
    sched, lrs = _timm_run(name, kw, n * spe, per == "epoch", spe)
    extra = dict(noise_horizon_t=horizon) if horizon is not None else {}
    converted = S.from_timm(sched, steps_per_epoch=spe if per == "epoch" else None, **extra)
    assert_schedule_lrs(converted, lrs, GROUP_LRS, f"from_timm {case}/{per}")
    direct = getattr(S.timm, name)(t_in_epochs=per == "epoch", steps_per_epoch=spe if per == "epoch" else None,
                                   **kw, **extra)
    assert direct == converted
    assert_schedule_lrs(direct, lrs, GROUP_LRS, f"S.timm.{name} {case}/{per}")


def test_timm_uniform_noise():
    sched, lrs = _timm_run("CosineLRScheduler", dict(t_initial=20, noise_range_t=[0, 18], noise_pct=0.4), 24,
                           False, noise_type="uniform")
    assert_schedule_lrs(S.from_timm(sched), lrs, GROUP_LRS, "uniform noise")


def test_timm_noise_is_timms_own_numbers():
    """The noise is drawn from torch.Generator(noise_seed + t) as timm draws it: bit for bit."""
    sched, lrs = _timm_run("StepLRScheduler", dict(decay_t=100, noise_range_t=[1, 30], noise_pct=0.5), 30, False)
    s = S.from_timm(sched)
    assert s.lrs(30, GROUP_LRS[0]).tolist() == [row[0] for row in lrs]


def test_open_ended_noise_stops_at_the_horizon():
    sched, lrs = _timm_run("StepLRScheduler", dict(decay_t=100, noise_range_t=5, noise_seed=1), 30, False)
    s = S.from_timm(sched, noise_horizon_t=20)
    got = s.lrs(30, GROUP_LRS[0]).tolist()
    assert got[:20] == [row[0] for row in lrs[:20]]
    assert got[20:] == [GROUP_LRS[0]] * 10  # past noise_horizon_t: no noise (timm would go on)
    assert any(row[0] != GROUP_LRS[0] for row in lrs[20:])


@pytest.mark.parametrize("case", ["cosine-cycles-mul", "tanh-warmup-to-curve", "multistep", "cosine-noise"])
def test_optimizer_follows_timm(case):
    name, kw, n = CASES[case]
    sched, lrs = _timm_run(name, kw, n, False)
    run_against_recorded(lrfused.AdamW, S.from_timm(sched), lrs, GROUP_LRS, weight_decay=0.1)


def test_resume_in_the_middle():
    s = S.timm.CosineLRScheduler(12, lr_min=1e-4, cycle_mul=1.5, cycle_limit=3, warmup_t=3, t_in_epochs=True,
                                 steps_per_epoch=2, noise_range_t=[4, 20], noise_seed=11)
    assert_resume_is_exact(lrfused.SGD, s, GROUP_LRS, steps=40, momentum=0.9)


@pytest.mark.parametrize("name,kw,exc,match", [
    ("CosineLRScheduler", dict(t_initial=0), ValueError, "t_initial"),
    ("CosineLRScheduler", dict(t_initial=5, lr_min=-1.0), ValueError, "lr_min"),
    ("CosineLRScheduler", dict(t_initial=5, cycle_mul=0.0), ValueError, "cycle_mul"),
    ("TanhLRScheduler", dict(t_initial=5, lb=3.0, ub=-7.0), ValueError, "lb"),
    ("StepLRScheduler", dict(decay_t=0), ZeroDivisionError, "decay_t"),
    ("MultiStepLRScheduler", dict(decay_t=5), TypeError, "decay_t"),
    ("CosineLRScheduler", dict(t_initial=5, warmup_t=-1), ValueError, "warmup_t"),
    ("CosineLRScheduler", dict(t_initial=5, noise_range_t=4), ValueError, "noise_horizon_t"),
    ("CosineLRScheduler", dict(t_initial=5, noise_range_t=[1, 2, 3]), ValueError, "noise_range_t"),
    ("WSDLRScheduler", dict(t_initial=5, decay_t=6), ValueError, "decay_t"),
    ("WSDLRScheduler", dict(t_initial=5, decay_t=2, decay_ratio=1.0), ValueError, "decay_ratio"),
    ("WSDLRScheduler", dict(t_initial=5, decay_t=2, stable_fn="rsqrt"), ValueError, "stable_timescale"),
    ("WSDLRScheduler", dict(t_initial=5, decay_t=2, decay_fn="step"), ValueError, "decay_fn"),
    ("WSDLRScheduler", dict(t_initial=5, decay_t=2.5, decay_fn=lambda f: 1 - f), ValueError, "callable decay_fn"),
])
def test_bad_arguments_are_named(name, kw, exc, match):
    with pytest.raises(exc, match=match) as ours:
        getattr(S.timm, name)(t_in_epochs=False, **kw)
    if name == "WSDLRScheduler" and match != "callable decay_fn":  # timm raises (not asserts) these: the same
        with pytest.raises(exc) as theirs:
            getattr(timm_scheduler(), name)(torch_optimizer(GROUP_LRS), t_in_epochs=False, **kw)
        assert str(ours.value) == str(theirs.value)


def test_epochs_need_steps_per_epoch():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        S.timm.CosineLRScheduler(10)
    sched, _ = _timm_run("CosineLRScheduler", dict(t_initial=10), 1, True)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        S.from_timm(sched)


def test_from_timm_refuses_what_it_cannot_express():
    ts = timm_scheduler()
    opt = torch_optimizer(GROUP_LRS)
    with pytest.raises(ValueError, match="PlateauLRScheduler"):
        S.from_timm(ts.PlateauLRScheduler(opt))
    opt.param_groups[0]["lr_scale"] = 0.5
    with pytest.raises(ValueError, match="lr_scale"):
        S.from_timm(ts.CosineLRScheduler(opt, t_initial=5, t_in_epochs=False))
    with pytest.raises(TypeError, match="from_timm"):
        S.from_timm(torch.optim.lr_scheduler.StepLR(opt, 3))


def test_timm_schedules_pickle_under_their_namespace():
    import pickle

    s = S.timm.TanhLRScheduler(10, warmup_t=2, t_in_epochs=False)
    assert type(s).__module__ == "lrfused.schedules.timm"
    assert pickle.loads(pickle.dumps(s)) == s
    assert "timm.TanhLRScheduler(t_initial=10" in repr(s)
