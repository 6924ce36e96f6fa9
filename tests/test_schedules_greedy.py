"""HuggingFace's GreedyLR (get_schedule("greedy")) against transformers.optimization.GreedyLR running live:
random metric sequences through opt.report(), lr up and down, cooldown, warmup, smoothing, resets, several
groups with per-group bounds, Python numbers and 0-dim tensors; a resume in the middle; bad arguments."""
import copy
import pickle
import random

import pytest
import torch

import lrfused
from lrfused import schedules as S

transformers = pytest.importorskip("transformers")
GreedyLR = getattr(transformers.optimization, "GreedyLR", None)
pytestmark = pytest.mark.skipif(GreedyLR is None, reason="this transformers has no GreedyLR")

GROUP_LRS = [0.1, 0.02]

CONFIGS = {
    "defaults-short-patience": dict(patience=2, min_lr=1e-3, max_lr=0.5),
    "rel-cooldown-warmup": dict(patience=1, factor=0.7, threshold=0.01, threshold_mode="rel", cooldown=2, warmup=1,
                                min_lr=[1e-3, 1e-4], max_lr=[0.3, 0.05]),
    "max-mode": dict(mode="max", patience=1, factor=0.8, min_lr=0.01, max_lr=0.2),
    "smooth-window": dict(patience=1, factor=0.9, smooth=True, window_size=4, min_lr=1e-3, max_lr=0.3),
    "resets": dict(patience=0, factor=0.5, min_lr=0.02, max_lr=0.2, reset_start=3, smooth=True, window_size=3),
    "reset-start-zero": dict(patience=0, factor=0.5, min_lr=0.05, max_lr=0.2, reset_start=0),
}


def _metrics(seed, n):
    """A noisy metric with stretches of improvement and of stagnation, so both directions fire."""
    rng = random.Random(seed)
    v, out = 1.0, []
    for i in range(n):
        trend = -0.05 if (i // 7) % 2 == 0 else 0.01
        v = v + trend + rng.gauss(0, 0.03)
        out.append(round(v, 6) if rng.random() < 0.2 else v)
    return out


COUNTERS = ("best", "num_bad_epochs", "num_good_epochs", "cooldown_counter", "warmup_counter", "reset_start")


def _hf_run(cfg, metrics):
    """The lrs after each report, and HF's counters after each report."""
    opt = torch.optim.SGD([{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in GROUP_LRS])
    sched = GreedyLR(opt, **cfg)
    lrs, counters = [], []
    for m in metrics:
        sched.step(m)
        lrs.append([g["lr"] for g in opt.param_groups])
        counters.append({c: getattr(sched, c) for c in COUNTERS})
    return lrs, counters


def _hf_lrs(cfg, metrics):
    return _hf_run(cfg, metrics)[0]


def _lrf(cfg):
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in GROUP_LRS]
    return lrfused.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, GROUP_LRS)],
                       schedule=S.get_schedule("greedy", **cfg))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", sorted(CONFIGS))
@pytest.mark.parametrize("as_tensor", [False, True], ids=["number", "tensor"])
def test_greedy_matches_hf_live(case, seed, as_tensor, device):
    cfg = CONFIGS[case]
    metrics = _metrics(seed, 80)
    expected, counters = _hf_run(cfg, metrics)
    opt = _lrf(cfg)
    if device != "cpu":
        opt = lrfused.SGD([{"params": [torch.nn.Parameter(torch.zeros(2, device=device))], "lr": lr}
                           for lr in GROUP_LRS], schedule=S.get_schedule("greedy", **cfg))
    got = []
    for m, want in zip(metrics, counters):
        opt.report(torch.tensor(m, dtype=torch.float64, device=device) if as_tensor else m)
        got.append(opt.schedule_state.plateau_lrs)
        state = opt.schedule_state.plateau
        assert {c: state[c] for c in COUNTERS} == want
    assert got == expected  # the same arithmetic, in the same order: the same bits
    assert len({tuple(r) for r in expected}) > 3, "the metric sequence should move the lr both ways"


def test_lr_moves_both_ways_and_steps_apply_it():
    cfg = CONFIGS["defaults-short-patience"]
    metrics = _metrics(0, 60)
    expected = _hf_lrs(cfg, metrics)
    ups = sum(b[0] > a[0] for a, b in zip(expected, expected[1:]))
    downs = sum(b[0] < a[0] for a, b in zip(expected, expected[1:]))
    assert ups > 0 and downs > 0
    p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = lrfused.SGD([p], lr=GROUP_LRS[0], schedule=S.get_schedule("greedy", **cfg))
    for m, lrs in zip(metrics, expected):
        opt.report(m)
        p.grad = torch.ones_like(p)
        before = p.detach().clone()
        opt.step()
        assert torch.equal(p.detach(), before - lrs[0])  # SGD without momentum: p -= lr * 1
        assert opt.param_groups[0]["lr"] == lrs[0]


@pytest.mark.parametrize("case", ["smooth-window", "resets", "rel-cooldown-warmup"])
def test_resume_in_the_middle_continues_exactly(case):
    cfg = CONFIGS[case]
    metrics = _metrics(5, 60)
    full = _lrf(cfg)
    for m in metrics:
        full.report(m)
    half = _lrf(cfg)
    for m in metrics[:30]:
        half.report(m)
    state = pickle.loads(pickle.dumps(half.state_dict()))
    resumed = _lrf(cfg)
    resumed.load_state_dict(state)
    for m in metrics[30:]:
        resumed.report(m)
    assert resumed.schedule_state.plateau_lrs == full.schedule_state.plateau_lrs
    assert resumed.schedule_state.plateau == full.schedule_state.plateau
    assert torch.equal(resumed.schedule_state.tensor(torch.device("cpu")), full.schedule_state.tensor(torch.device("cpu")))
    copied = copy.deepcopy(half)
    for m in metrics[30:]:
        copied.report(m)
    assert copied.schedule_state.plateau_lrs == full.schedule_state.plateau_lrs


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(factor=1.0), ValueError, "Factor should be < 1.0"),
    (dict(mode="up"), ValueError, "mode up is unknown"),
    (dict(threshold_mode="both"), ValueError, "threshold mode both is unknown"),
])
def test_bad_arguments_raise_what_hf_raises(kwargs, exc, match):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(exc, match=match):
        GreedyLR(opt, **kwargs)
    with pytest.raises(exc, match=match):
        S.get_schedule("greedy", **kwargs)


def test_per_group_bounds_must_match_the_groups():
    with pytest.raises(ValueError, match="expected 2 min_lrs, got 3"):  # HF raises when built, so does lrfused
        _lrf(dict(min_lr=[1e-3, 1e-4, 1e-5]))
    with pytest.raises(ValueError, match="window_size"):
        S.get_schedule("greedy", smooth=True, window_size=0)


def test_greedy_report_op_refuses_bad_arguments_and_changes_nothing(device):
    from lrfused import contract
    from lrfused.contract import SchedLayout

    state = torch.zeros(SchedLayout(2).size, dtype=torch.float64, device=device)
    greedy_state = torch.zeros(contract.greedy_state_size(3), dtype=torch.float64, device=device)
    metric = torch.tensor(1.0, dtype=torch.float64, device=device)
    config = S.get_schedule("greedy", smooth=True, window_size=3).greedy_config([0.1, 0.2])
    op = torch.ops.lrfused.greedy_report_
    window_slot = contract.GREEDY_CONFIG.index("window_size")
    before = (state.clone(), greedy_state.clone())
    bad = [
        ((state, greedy_state, metric, config[:-1], 2), "config must hold"),
        ((state, greedy_state[:-1], metric, config, 2), "greedy_state must be"),
        ((state, greedy_state.float(), metric, config, 2), "greedy_state must be"),
        ((state, greedy_state, metric, [0.0 if i == window_slot else v for i, v in enumerate(config)], 2),
         "window_size"),
        ((state, greedy_state, metric, config, 3), "sched_state"),
        ((state, greedy_state, torch.zeros(2, dtype=torch.float64, device=device), config, 2), "metric"),
    ]
    for args, match in bad:
        with pytest.raises(RuntimeError, match=match):
            op(*args)
        assert torch.equal(state, before[0]) and torch.equal(greedy_state, before[1])
    op(state, greedy_state, metric, config, 2)
    assert state[SchedLayout.PLATEAU_EPOCH] == 1 and greedy_state[contract.GREEDY_SLOTS["window_count"]] == 1


def test_per_group_bounds_are_checked_at_construction():
    params = [torch.nn.Parameter(torch.zeros(2)) for _ in GROUP_LRS]
    with pytest.raises(ValueError, match="expected 2 max_lrs, got 3"):
        lrfused.SGD([{"params": [p]} for p in params], lr=0.1, schedule=S.get_schedule("greedy", max_lr=[1, 2, 3]))


def test_window_size_matters_only_with_smoothing():
    """HF accepts window_size=0 without smoothing; so does lrfused, and keeps no window then."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    GreedyLR(opt, window_size=0, smooth=False)
    lrf = _lrf(dict(window_size=0, patience=1))
    for m in _metrics(1, 20):
        lrf.report(m)
    assert lrf.schedule_state.plateau["num_reports"] == 20


def test_a_corrupt_saved_window_is_refused_and_the_op_never_leaves_its_window():
    from lrfused import contract
    from lrfused.contract import SchedLayout

    cfg = CONFIGS["smooth-window"]
    opt = _lrf(cfg)
    for m in _metrics(2, 10):
        opt.report(m)
    sd = opt.state_dict()
    (name, state), = sd["lrfused"]["report_state"].items()
    bad = state.clone()
    bad[contract.GREEDY_SLOTS["window_head"]] = 20.0
    sd["lrfused"]["report_state"][name] = bad
    before = opt.schedule_state.plateau
    with pytest.raises(ValueError, match="GreedyLR state"):
        opt.load_state_dict(sd)
    assert opt.schedule_state.plateau == before
    # the op itself: a window position outside the window starts afresh, nothing written past it
    window = cfg["window_size"]
    buffer = torch.full((contract.greedy_state_size(window) + 30,), -7.0, dtype=torch.float64)
    greedy_state = buffer[:contract.greedy_state_size(window)]
    greedy_state.zero_()
    greedy_state[contract.GREEDY_SLOTS["window_head"]] = 20.0
    greedy_state[contract.GREEDY_SLOTS["window_count"]] = window
    sched_state = torch.zeros(SchedLayout(2).size, dtype=torch.float64)
    config = S.get_schedule("greedy", **cfg).greedy_config(GROUP_LRS)
    torch.ops.lrfused.greedy_report_(sched_state, greedy_state, torch.tensor(1.0, dtype=torch.float64), config, 2)
    assert torch.all(buffer[contract.greedy_state_size(window):] == -7.0)
    assert greedy_state[contract.GREEDY_SLOTS["window_count"]] == 1
