"""ReduceLROnPlateau: the plateau_report_ op (sched::plateau_step) driven directly on a sched_state
tensor gives exactly torch's lr sequence."""
import math

import pytest
import torch

from lrfused import schedules as S
from lrfused.contract import SchedLayout  # the sched_state layout, as the extension defines it

SLOT_BEST, SLOT_BAD, SLOT_COOLDOWN, SLOT_EPOCH = (SchedLayout.PLATEAU_BEST, SchedLayout.PLATEAU_BAD,
                                                  SchedLayout.PLATEAU_COOLDOWN, SchedLayout.PLATEAU_EPOCH)

METRICS = [10.0, 9.0, 9.5, 9.4, 9.3, 9.2, 9.1, 8.0, 8.0, 8.0, 8.0, 7.9999, 8.0, 8.1, 8.2, 8.3, 8.4, 8.5,
           7.0, 7.5, 7.2, 7.3, 7.1, 7.05, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 7.0, 6.0, 6.5, 6.5, 6.5, 6.5, 6.5,
           6.5, 6.5, 6.5, 6.5, 6.5, 6.5, 6.5, 6.5, -1.0, -0.5, -0.9, -0.99, -0.999, -1.0, -1.0, -1.0]


def run_op(schedule, base_lrs, metrics, metric_dtype=torch.float64):
    G = len(base_lrs)
    layout = SchedLayout(G)
    state = torch.zeros(layout.size, dtype=torch.float64)
    state[layout.region("plateau_lr")] = torch.tensor(base_lrs, dtype=torch.float64)
    config = schedule.plateau_config(G)
    out = []
    for m in metrics:
        torch.ops.lrfused.plateau_report_(state, torch.tensor(m, dtype=metric_dtype), config, G)
        out.append(state[layout.region("plateau_lr")].tolist())
    return out, state


def run_torch(base_lrs, metrics, **kw):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, base_lrs)])
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, **kw)
    out = []
    for m in metrics:
        sched.step(m)
        out.append([g["lr"] for g in opt.param_groups])
    return out, sched


CONFIGS = [
    dict(),
    dict(patience=2),
    dict(patience=0),
    dict(patience=1, cooldown=2),
    dict(patience=2, cooldown=3, factor=0.5, threshold=0.01),
    dict(patience=1, threshold_mode="abs", threshold=0.05),
    dict(patience=1, factor=0.5, min_lr=0.02),
    dict(patience=0, factor=0.5, min_lr=[0.03, 0.001]),
    dict(patience=0, factor=0.9, eps=2e-3),  # reductions smaller than eps are ignored
    dict(mode="max", patience=1),
    dict(mode="max", patience=2, cooldown=1, threshold_mode="abs", threshold=0.1),
    dict(mode="max", patience=0, threshold=0.0, factor=0.5, min_lr=1e-3),
]


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("kw", CONFIGS, ids=[repr(c) for c in CONFIGS])
def test_plateau_op_is_torch_exactly(kw, sign):
    base = [0.1, 0.04]
    metrics = [sign * m for m in METRICS]
    expected, sched = run_torch(base, metrics, **kw)
    actual, state = run_op(S.ReduceLROnPlateau(**kw), base, metrics)
    assert actual == expected
    assert state[SLOT_BEST].item() == sched.best
    assert state[SLOT_BAD].item() == sched.num_bad_epochs
    assert state[SLOT_COOLDOWN].item() == sched.cooldown_counter
    assert state[SLOT_EPOCH].item() == len(metrics)


def test_plateau_lr_actually_reduces_and_floors():
    # guards the sequence above against being trivially constant
    _, state = run_op(S.ReduceLROnPlateau(patience=0, factor=0.5, min_lr=[0.03, 0.001]), [0.1, 0.04],
                      METRICS)
    assert state[SchedLayout(2).region("plateau_lr")].tolist() == [0.03, 0.001]


def test_plateau_first_report_initialises_best_from_zeroed_state():
    # the optimizer creates sched_state with zeros: best = 0 must not count before the first report
    for mode, first in [("min", 5.0), ("max", -5.0)]:
        _, state = run_op(S.ReduceLROnPlateau(mode=mode), [0.1], [first])
        assert state[SLOT_BEST].item() == first and state[SLOT_BAD].item() == 0


def test_plateau_float32_metric_and_nan():
    metrics = [3.0, 2.5, 2.5, 2.5, 2.5]
    expected, _ = run_torch([0.1], metrics, patience=1)
    actual, _ = run_op(S.ReduceLROnPlateau(patience=1), [0.1], metrics, metric_dtype=torch.float32)
    assert actual == expected
    metrics = [3.0, math.nan, math.nan, 2.0, math.nan]
    expected, _ = run_torch([0.1], metrics, patience=0)
    actual, _ = run_op(S.ReduceLROnPlateau(patience=0), [0.1], metrics)
    assert actual == expected


def test_plateau_config_and_checks():
    s = S.ReduceLROnPlateau(mode="max", factor=0.5, patience=3, threshold=0.2, threshold_mode="abs",
                            cooldown=4, min_lr=[0.1, 0.2], eps=1e-6)
    assert s.is_plateau and not s.cycles_momentum and s.max_step() is None
    assert s.plateau_config(2) == [1.0, 0.5, 3.0, 0.2, 1.0, 4.0, 1e-6, 0.1, 0.2]
    assert S.ReduceLROnPlateau().plateau_config(3) == [0.0, 0.1, 10.0, 1e-4, 0.0, 0.0, 1e-8, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="expected 3 min_lrs, got 2"):
        s.plateau_config(3)
    with pytest.raises(ValueError, match="not a ReduceLROnPlateau"):
        S.StepLR(2).plateau_config(1)
    # host evaluation: the plateau leaf is the base lr
    assert s.lrs(4, 0.3).tolist() == [0.3] * 4
    state = torch.zeros(SchedLayout(1).size, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="config must hold"):
        torch.ops.lrfused.plateau_report_(state, torch.tensor(1.0), [0.0] * 7, 1)
    with pytest.raises(RuntimeError, match=f"sched_state has {SchedLayout(1).size} slots, expected {SchedLayout(2).size}"):
        torch.ops.lrfused.plateau_report_(state, torch.tensor(1.0), [0.0] * 9, 2)


def test_plateau_not_allowed_inside_composites():
    p = S.ReduceLROnPlateau()
    with pytest.raises(ValueError, match="SequentialLR does not support ReduceLROnPlateau"):
        S.SequentialLR([S.StepLR(2), p], [3])
    with pytest.raises(ValueError, match="ChainedScheduler does not support ReduceLROnPlateau"):
        S.ChainedScheduler([p])
    with pytest.raises(ValueError, match="per_epoch does not support ReduceLROnPlateau"):
        p.per_epoch(10)
    nested = S.SequentialLR([S.StepLR(2), S.ChainedScheduler([S.ExponentialLR(0.9)])], [3])
    with pytest.raises(ValueError, match="ChainedScheduler does not support ReduceLROnPlateau"):
        S.ChainedScheduler([nested, p])


def test_plateau_ops_pass_opcheck():
    layout = SchedLayout(2)
    state = torch.zeros(layout.size, dtype=torch.float64)
    state[layout.region("plateau_lr")] = 0.1
    torch.library.opcheck(torch.ops.lrfused.plateau_report_.default,
                          (state, torch.tensor(2.0, dtype=torch.float64),
                           S.ReduceLROnPlateau(patience=0).plateau_config(2), 2))
    prog = S.OneCycleLR(1.0, total_steps=10).program()
    torch.library.opcheck(torch.ops.lrfused.schedule_lrs.default, (prog, torch.arange(12), 0.5))
    torch.library.opcheck(torch.ops.lrfused.schedule_momenta.default, (prog, torch.arange(12), 0.9))
