"""HuggingFace's named schedules (get_schedule) against their formulas (SCHEDULES.md, written here in
fp64) and, where transformers is importable, against HF's own LambdaLR schedulers running live."""
import math
import warnings

import pytest
import torch

from lrfused import schedules as S


def warm(k, W):
    return k / max(1, W)


def m_linear(k, W, T):
    return warm(k, W) if k < W else max(0.0, (T - k) / max(1, T - W))


def m_cosine(k, W, T, c=0.5, r=0.0):
    if k < W:
        return warm(k, W)
    p = (k - W) / max(1, T - W)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * c * 2.0 * p)) * (1 - r) + r)


def m_restarts(k, W, T, c=1):
    if k < W:
        return warm(k, W)
    p = (k - W) / max(1, T - W)
    return 0.0 if p >= 1 else max(0.0, 0.5 * (1 + math.cos(math.pi * ((c * p) % 1.0))))


def m_poly(k, W, T, lr_init, lr_end=1e-7, power=1.0):
    if k < W:
        return warm(k, W)
    if k > T or T == W:  # T == W: lrfused's continuous limit where HF divides by zero
        return lr_end / lr_init
    return ((lr_init - lr_end) * (1 - (k - W) / (T - W)) ** power + lr_end) / lr_init


def m_inv_sqrt(k, W, tau=None):
    tau = tau or W or 10_000
    return warm(k, W) if k < W else 1 / math.sqrt((k + tau - W) / tau)


def m_cos_warmup_min(k, W, T, c=0.5, r=0.0, w=None):
    if k < W:
        return (k + 1) / max(1, W) if w is None else w + (1 - w) * k / max(1, W - 1)
    p = (k - W + 1) / max(1, T - W)
    return max(0.0, 0.5 * (1 + math.cos(math.pi * c * 2.0 * p)) * (1 - r) + r)


def m_wsd(k, W, S_, D, wt="linear", dt="cosine", r=0.0, c=0.5):
    if k < W:
        p = k / max(1, W)
        f = {"linear": p, "cosine": 0.5 * (1 - math.cos(math.pi * p)), "1-sqrt": 1 - math.sqrt(1 - p)}[wt]
        return max(0.0, f * (1 - r) + r)
    if k < W + S_:
        return 1.0
    if k < W + S_ + D:
        p = (k - W - S_) / max(1, D)
        f = {"linear": 1 - p, "cosine": 0.5 * (1 + math.cos(math.pi * c * 2.0 * p)),
             "1-sqrt": 1 - math.sqrt(p)}[dt]
        return max(0.0, f * (1 - r) + r)
    return r


B = 0.2  # base lr (== the optimizer's default lr where HF reads it)
N = 40

# (name, W, T, kwargs, multiplier)
HF_CASES = [
    ("constant", None, None, {}, lambda k: 1.0),
]
for W, T in [(5, 30), (0, 30), (30, 30), (0, 0)]:
    HF_CASES += [
        ("constant_with_warmup", W, None, {}, lambda k, W=W: warm(k, W) if k < W else 1.0),
        ("linear", W, T, {}, lambda k, W=W, T=T: m_linear(k, W, T)),
        ("cosine", W, T, {}, lambda k, W=W, T=T: m_cosine(k, W, T)),
        ("cosine", W, T, {"num_cycles": 1.5}, lambda k, W=W, T=T: m_cosine(k, W, T, 1.5)),
        ("cosine_with_restarts", W, T, {"num_cycles": 3}, lambda k, W=W, T=T: m_restarts(k, W, T, 3)),
        ("cosine_with_restarts", W, T, {}, lambda k, W=W, T=T: m_restarts(k, W, T)),
        ("polynomial", W, T, {"lr_end": 1e-3, "power": 2.0},
         lambda k, W=W, T=T: m_poly(k, W, T, B, 1e-3, 2.0)),
        ("polynomial", W, T, {}, lambda k, W=W, T=T: m_poly(k, W, T, B)),
        ("inverse_sqrt", W, None, {}, lambda k, W=W: m_inv_sqrt(k, W)),
        ("inverse_sqrt", W, None, {"timescale": 7}, lambda k, W=W: m_inv_sqrt(k, W, 7)),
        ("cosine_with_min_lr", W, T, {"min_lr_rate": 0.1}, lambda k, W=W, T=T: m_cosine(k, W, T, 0.5, 0.1)),
        ("cosine_with_min_lr", W, T, {"min_lr": 0.01, "num_cycles": 0.7},
         lambda k, W=W, T=T: m_cosine(k, W, T, 0.7, 0.01 / B)),
        ("cosine_warmup_with_min_lr", W, T, {"min_lr_rate": 0.05},
         lambda k, W=W, T=T: m_cos_warmup_min(k, W, T, r=0.05)),
        ("cosine_warmup_with_min_lr", W, T, {"min_lr": 0.004, "warmup_lr_rate": 0.2},
         lambda k, W=W, T=T: m_cos_warmup_min(k, W, T, r=0.004 / B, w=0.2)),
        ("warmup_stable_decay", W, T, {"num_decay_steps": 10},
         lambda k, W=W, T=T: m_wsd(k, W, T - W - 10, 10)),
        ("warmup_stable_decay", W, None, {"num_decay_steps": 8, "num_stable_steps": 6, "warmup_type": "cosine",
                                          "decay_type": "1-sqrt", "min_lr_ratio": 0.1},
         lambda k, W=W: m_wsd(k, W, 6, 8, "cosine", "1-sqrt", 0.1)),
        ("warmup_stable_decay", W, None, {"num_decay_steps": 9, "num_stable_steps": 3, "warmup_type": "1-sqrt",
                                          "decay_type": "linear"},
         lambda k, W=W: m_wsd(k, W, 3, 9, "1-sqrt", "linear")),
    ]


def _ids():
    return [f"{c[0]}-W{c[1]}-T{c[2]}-{'-'.join(f'{k}{v}' for k, v in c[3].items())}" for c in HF_CASES]


@pytest.mark.parametrize("case", HF_CASES, ids=_ids())
def test_hf_name_matches_formula(case):
    name, W, T, kw, m = case
    ours = S.get_schedule(name, W, T, **kw)
    actual = ours.lrs(N, B)
    expected = torch.tensor([B * m(k) for k in range(N)], dtype=torch.float64)
    err = (actual - expected).abs()
    assert bool((err <= 1e-12 * expected.abs() + 1e-15 * B).all()), (actual, expected)
    assert [ours.lr_at(k, B) for k in range(N)] == actual.tolist()


def _hf_live(name, W, T, kw, n):
    transformers = pytest.importorskip("transformers")
    from transformers.optimization import get_scheduler

    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2], "lr": B / 4}], lr=B)
    assert transformers.__version__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched = get_scheduler(name, opt, num_warmup_steps=W, num_training_steps=T,
                              scheduler_specific_kwargs=dict(kw))
        out = [[], []]
        for k in range(n):
            for g in range(2):
                out[g].append(opt.param_groups[g]["lr"])
            opt.step()
            if k < n - 1:
                sched.step()
    return sched, [torch.tensor(x, dtype=torch.float64) for x in out]


# HF's polynomial divides by zero at k == T == W: with W == T == 0 it cannot take a single step.
LIVE_CASES = [(c, i) for c, i in zip(HF_CASES, _ids()) if not (c[0] == "polynomial" and c[1] == c[2] == 0)]


@pytest.mark.parametrize("case", [c for c, _ in LIVE_CASES], ids=[i for _, i in LIVE_CASES])
def test_hf_name_matches_live_transformers(case):
    name, W, T, kw, _ = case
    n = T if name == "polynomial" and T == W else N  # stop before HF's division by zero
    sched, expected = _hf_live(name, W, T, kw, n)
    # HF reads the optimizer's default lr B: lr_init=B makes lrfused do the same for every group
    lr_init_kw = {"lr_init": B} if name in ("polynomial", "cosine_with_min_lr",
                                             "cosine_warmup_with_min_lr") else {}
    ours = S.get_schedule(name, W, T, **kw, **lr_init_kw)
    for g, b in enumerate([B, B / 4]):
        actual = ours.lrs(n, b)
        assert bool(((actual - expected[g]).abs() <= 1e-9 * b + 1e-7 * expected[g].abs()).all()), \
            (g, actual, expected[g])
    # from_torch recognises HF's lambdas and maps them to the exact named schedule
    mapped = S.from_torch(sched)
    assert not isinstance(mapped, S.LambdaLR)
    actual = mapped.lrs(n, B)
    assert bool(((actual - expected[0]).abs() <= 1e-9 * B + 1e-7 * expected[0].abs()).all())


def test_hf_reduce_lr_on_plateau_greedy_and_constant():
    s = S.get_schedule("reduce_lr_on_plateau", patience=3, factor=0.5)
    assert s == S.ReduceLROnPlateau(patience=3, factor=0.5) and s.is_plateau
    g = S.get_schedule("greedy", None, None, patience=3, factor=0.5, smooth=True)  # no warmup or total needed
    assert g == S.GreedyLR(patience=3, factor=0.5, smooth=True) and g.is_plateau and g != s
    assert S.get_schedule("constant") == S.Constant()


@pytest.mark.parametrize("name", [n for n in S.HF_NAMES if n not in ("constant", "reduce_lr_on_plateau", "greedy")])
def test_hf_missing_warmup_is_named(name):
    kw = {"num_decay_steps": 3} if name == "warmup_stable_decay" else {}
    kw.update({"min_lr_rate": 0.1} if "min_lr" in name else {})
    with pytest.raises(ValueError, match="requires `num_warmup_steps`"):
        S.get_schedule(name, None, 10, **kw)


@pytest.mark.parametrize("name", ["linear", "cosine", "cosine_with_restarts", "polynomial",
                                  "cosine_with_min_lr", "cosine_warmup_with_min_lr"])
def test_hf_missing_training_steps_is_named(name):
    kw = {"min_lr_rate": 0.1} if "min_lr" in name else {}
    with pytest.raises(ValueError, match="requires `num_training_steps`"):
        S.get_schedule(name, 3, **kw)


def test_hf_bad_arguments():
    with pytest.raises(ValueError, match="unknown schedule name 'cosin'"):
        S.get_schedule("cosin", 1, 10)
    with pytest.raises(TypeError, match="unexpected keyword argument.*num_cycles"):
        S.get_schedule("linear", 1, 10, num_cycles=2)
    with pytest.raises(ValueError, match=r"lr_end \(0.5\) must be smaller than initial lr \(0.1\)"):
        S.get_schedule("polynomial", 1, 10, lr_end=0.5, lr_init=0.1)
    with pytest.raises(ValueError, match="Only one of min_lr or min_lr_rate should be set"):
        S.get_schedule("cosine_with_min_lr", 1, 10, min_lr=0.1, min_lr_rate=0.1)
    with pytest.raises(ValueError, match="One of min_lr or min_lr_rate should be set"):
        S.get_schedule("cosine_warmup_with_min_lr", 1, 10)
    with pytest.raises(ValueError, match="requires `num_decay_steps`"):
        S.get_schedule("warmup_stable_decay", 1, 10)
    with pytest.raises(ValueError, match="Either num_training_steps or num_stable_steps"):
        S.get_schedule("warmup_stable_decay", 1, num_decay_steps=3)
    with pytest.raises(ValueError, match="Unknown warmup type: exp"):
        S.get_schedule("warmup_stable_decay", 1, 10, num_decay_steps=3, warmup_type="exp")
    with pytest.raises(ValueError, match="Unknown decay type: exp"):
        S.get_schedule("warmup_stable_decay", 1, 10, num_decay_steps=3, decay_type="exp")
    with pytest.raises(ValueError, match="num_warmup_steps"):
        S.get_schedule("linear", -1, 10)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        S.get_schedule("reduce_lr_on_plateau", factor=2.0)
