"""What the ops and the launch plan promise at their boundary, checked on the CPU path: the defects that
were first found by reading the CUDA path, whose code shares these rules (schedule programs validated in
C++, the applied lr recorded for every group, GradScaler's division, float64 clip norms, checkpoints
that resume on other devices, no plan rebuild inside a CUDA graph capture, results independent of the
thread count)."""
import contextlib
import copy
import math
import random

import pytest
import torch
from torch import nn

import lrfused
from lrfused import contract
from lrfused import schedules as S
from lrfused import _ops
from lrfused.contract import SchedLayout

ops = torch.ops.lrfused


@pytest.fixture
def op_path():
    """step() through the registered ops (what torch.compile traces), run eagerly."""
    with lrfused.optim.eager_op_path():
        yield

# One schedule of every node kind, composites included: the programs the corruption test starts from.
SCHEDULES = [
    S.Constant(), S.StepLR(3, 0.5), S.MultiStepLR([2, 5], 0.5), S.ConstantLR(0.5, 4), S.LinearLR(0.1, 1.0, 5),
    S.ExponentialLR(0.9), S.PolynomialLR(10, 2.0), S.CosineAnnealingLR(10, 0.01),
    S.CosineAnnealingWarmRestarts(3, 2, 0.01), S.CyclicLR(0.01, 0.1, step_size_up=4),
    S.OneCycleLR(0.1, total_steps=20), S.LambdaLR(lambda k: 1.0 / (k + 1), total_steps=8),
    S.SequentialLR([S.LinearLR(0.1, 1.0, 3), S.CosineAnnealingLR(10)], [3]),
    S.ChainedScheduler([S.StepLR(2, 0.5), S.ExponentialLR(0.99)]), S.StepLR(2).per_epoch(5),
    S.get_schedule("cosine", 3, 20), S.get_schedule("warmup_stable_decay", 2, num_stable_steps=4, num_decay_steps=4),
]


def _program(schedule):
    return schedule.program(0, 1)


def _raw(kind, fields, tail=(), children=()):
    """A program node built by name (bypassing the Schedule classes' argument checks)."""
    return contract.node(kind, fields, tail, children)


# ---- schedule programs: checked in C++ before any kernel runs -------------------------------------

_CONSTANT = _raw("CONSTANT", {})


@pytest.mark.parametrize("bad,why", [
    (_raw("STEP", {"step_size": 0, "gamma": 0.5}), "step_size"),  # an integer division by 0
    (_raw("COSINE_WARM_RESTARTS", {"T_0": 0, "T_mult": 1, "eta_min": 0}), "T_0"),  # an endless loop
    (_raw("COSINE_WARM_RESTARTS", {"T_0": 3, "T_mult": 0, "eta_min": 0}), "T_0"),  # T_mult = 0
    (_raw("PER_EPOCH", {"steps_per_epoch": 0}, children=[_CONSTANT]), "steps_per_epoch"),
    (_raw("TABLE", {"count": 5}, tail=[1.0]), "table"),  # a table that claims 5 entries and has 1
    ([float(max(contract.KIND_NAMES) + 50), 2.0], "unknown node kind"),
    ([float(contract.KIND.CONSTANT), 9.0], "kind or length"),  # node longer than the program
    (_raw("CHAINED", {"count": 2}, children=[_CONSTANT, _CONSTANT]) + [0.0], "trailing"),  # a stray value
    (_raw("CHAINED", {"count": 2}, children=[_CONSTANT, _CONSTANT + [0.0]]), "children"),
])
def test_malformed_programs_are_refused_in_cpp(bad, why):
    program = torch.tensor(bad, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=f"invalid schedule program.*{why}"):
        _ops._C.check_program(program)
    with pytest.raises(RuntimeError, match="invalid schedule program"):
        ops.schedule_lrs(program, torch.arange(4), 1.0)


def test_malformed_program_refused_by_fused_step_with_nothing_changed():
    p = torch.randn(7)
    g = torch.randn(7)
    step = torch.zeros((), dtype=torch.float32)
    buf = torch.zeros(7)
    sched_state = torch.zeros(SchedLayout(1).size, dtype=torch.float64)
    before = [t.clone() for t in (p, g, step, buf, sched_state)]
    program = torch.tensor(_raw("STEP", {"step_size": 0, "gamma": 0.5}), dtype=torch.float64)
    with pytest.raises(RuntimeError, match="invalid schedule program"):
        ops.fused_sgd_([p], [g], [buf], [step], sched_state, program, 0, base_lr=0.1, momentum=0.9,
                       dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False, master_params=[],
                       momentum_buffer_absmax=[])
    for t, b in zip((p, g, step, buf, sched_state), before):
        assert torch.equal(t, b)


def test_corrupted_programs_never_crash_or_hang():
    """Any single corrupted value of any program is either refused by the validator or evaluates; the
    evaluators never divide an integer by 0, loop without end, or read outside the program."""
    rng = random.Random(0)
    specials = [0.0, -1.0, 1.0, 2.0, 0.5, 1e300, -1e300, math.inf, -math.inf, math.nan, 2.0 ** 62, 31.0, 3.0]
    steps = torch.tensor([0, 1, 7, 1000, 2 ** 40])
    refused = evaluated = 0
    for schedule in SCHEDULES:
        good = _program(schedule)
        _ops._C.check_program(good)
        for _ in range(60):
            bad = good.clone()
            i = rng.randrange(bad.numel())
            bad[i] = rng.choice(specials) if rng.random() < 0.7 else float(rng.randint(-5, 40))
            try:
                ops.schedule_lrs(bad, steps, 1.0)
                ops.schedule_momenta(bad, steps, 0.9)
                evaluated += 1
            except RuntimeError as e:
                assert "invalid schedule program" in str(e)
                refused += 1
    assert refused > 100 and evaluated > 100  # both branches exercised


def test_every_packed_schedule_is_valid():
    for schedule in SCHEDULES:
        for g, n in ((0, 1), (1, 3)):
            _ops._C.check_program(schedule.program(g, n))


# ---- the applied lr is recorded for every group that has state, with or without gradients -------

def test_fused_step_without_tensors_records_the_applied_lr():
    schedule = S.StepLR(2, 0.5)
    layout = SchedLayout(1)
    sched_state = torch.zeros(layout.size, dtype=torch.float64)
    sched_state[layout.STEP] = 5  # k
    ops.fused_adam_([], [], [], [], [], [], sched_state, _program(schedule), 0, base_lr=0.1, beta1=0.9, beta2=0.999,
                    eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=True,
                    master_params=[], exp_avg_absmax=[], exp_avg_sq_absmax=[])
    assert sched_state[layout.slot("last_lr", 0)].item() == schedule.lr_at(5, 0.1)
    assert sched_state[layout.slot("next_lr", 0)].item() == schedule.lr_at(6, 0.1)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "op-path"])
def test_get_last_lr_of_a_group_without_gradients(compiled, request):
    a, b = nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(3))
    schedule = S.ExponentialLR(0.5)
    opt = lrfused.AdamW([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, schedule=schedule)
    if compiled:  # the op path: what torch.compile traces
        request.getfixturevalue("op_path")
    a.grad, b.grad = torch.ones(4), torch.ones(3)
    opt.step()
    b.grad = None  # group 1 keeps its state but has no gradient from now on
    for k in range(1, 4):
        opt.step()
        assert opt.get_last_lr() == [schedule.lr_at(k, 0.1), schedule.lr_at(k, 0.2)]


# ---- GradScaler: gradients divided by the scale, as torch's fused optimizers do -----------------

@pytest.mark.parametrize("opt_name", ["SGD", "Adam", "AdamW"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_unscale_divides_like_torch_fused(opt_name, dtype):
    torch.manual_seed(0)
    scale = 3.0 * 7.0 / 5.0  # not a power of two: a reciprocal would differ by an ulp
    values = torch.randn(1000, dtype=dtype)
    pa, pb = nn.Parameter(values.clone()), nn.Parameter(values.clone())
    lopt = getattr(lrfused, opt_name)([pa], lr=1e-3)
    topt = getattr(torch.optim, opt_name)([pb], lr=1e-3, fused=True)
    grad = torch.randn(1000, dtype=dtype) * 1000
    pa.grad, pb.grad = grad.clone(), grad.clone()
    scale_t = torch.tensor(scale, dtype=torch.float32)
    lopt.step(grad_scale=scale_t, found_inf=torch.zeros(()))
    topt.grad_scale, topt.found_inf = scale_t, torch.zeros(())
    topt.step()
    assert torch.equal(pa.grad, pb.grad)  # the unscaled gradients stored back, bit for bit
    assert torch.equal(pa.grad, (grad.float() / torch.tensor(scale, dtype=torch.float32)).to(dtype)
                       if dtype != torch.float64 else grad / torch.tensor(scale, dtype=torch.float32).double())


# ---- fused clipping: sums of squares in float64 -----------------------------------------------

def test_grad_sq_norm_is_float64():
    out = ops.grad_sq_norm([torch.full((4,), 2.0, dtype=torch.float32)], None)
    assert out.dtype == torch.float64 and out.item() == 16.0


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "op-path"])
def test_clipping_fp64_gradients_past_float32_range(compiled, request):
    """A sum of squares past 3.4e38 stays finite: the clip factor is right, not 0 (a silent zero update)."""
    values = torch.randn(50, dtype=torch.float64)
    grad = torch.randn(50, dtype=torch.float64) * 1e30
    pa, pb = nn.Parameter(values.clone()), nn.Parameter(values.clone())
    lopt = lrfused.SGD([pa], lr=0.1, max_grad_norm=1.0)
    topt = torch.optim.SGD([pb], lr=0.1)
    if compiled:
        request.getfixturevalue("op_path")
    pa.grad, pb.grad = grad.clone(), grad.clone()
    lopt.step()
    norm = torch.nn.utils.clip_grad_norm_([pb], 1.0)
    topt.step()
    assert lopt.grad_norm.item() == pytest.approx(norm.item(), rel=1e-12)
    torch.testing.assert_close(pa.detach(), pb.detach(), rtol=1e-12, atol=1e-14)
    assert not torch.equal(pa.detach(), values)


# ---- checkpoints resume on whatever device holds the parameters now ----------------------------

@pytest.mark.parametrize("saved_under", ["cuda:0", "cuda:1", "meta"])
def test_schedule_position_survives_a_change_of_device(saved_under):
    schedule = S.OneCycleLR(0.1, total_steps=30)
    pa = nn.Parameter(torch.randn(6))
    opt = lrfused.SGD([pa], lr=0.1, momentum=0.9, schedule=schedule)
    for _ in range(7):
        pa.grad = torch.randn(6)
        opt.step()
    sd = opt.state_dict()
    sd["lrfused"]["sched_state"] = {saved_under: sd["lrfused"]["sched_state"]["cpu"]}  # saved on a GPU
    pb = nn.Parameter(pa.detach().clone())
    resumed = lrfused.SGD([pb], lr=0.1, momentum=0.9, schedule=schedule)
    resumed.load_state_dict(copy.deepcopy(sd))
    assert resumed.scheduler.last_epoch == 7
    for _ in range(5):
        g = torch.randn(6)
        pa.grad, pb.grad = g.clone(), g.clone()
        opt.step()
        resumed.step()
        assert resumed.get_last_lr() == opt.get_last_lr()
        assert torch.equal(pa, pb)


# ---- no plan rebuild inside a CUDA graph capture -----------------------------------------------

def test_plan_rebuild_during_capture_is_refused_with_nothing_changed(monkeypatch):
    a, b = nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(5))
    opt = lrfused.Adam([a, b], lr=0.1, schedule=S.CosineAnnealingLR(10))
    a.grad = torch.randn(5)
    opt.step()  # warm-up: a has state, b has none
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    b.grad = torch.randn(5)  # b's first gradient, inside the "capture"
    before = (a.detach().clone(), b.detach().clone(), copy.deepcopy(opt.state_dict()))
    with pytest.raises(RuntimeError, match="warm up before capturing|Warm up before capturing"):
        opt.step()
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])
    assert b not in opt.state or not opt.state[b]
    after = opt.state_dict()
    assert after["lrfused"]["host_steps"] == before[2]["lrfused"]["host_steps"]
    assert torch.equal(after["lrfused"]["sched_state"]["cpu"], before[2]["lrfused"]["sched_state"]["cpu"])
    monkeypatch.undo()
    opt.step()  # outside the capture the rebuild goes ahead
    assert "exp_avg" in opt.state[b]


# ---- the same bits whatever the thread count -----------------------------------------------------

OPTIONS = [
    ("SGD", dict(momentum=0.9, nesterov=True, weight_decay=1e-2)),
    ("SGD", dict(momentum=0.9, dampening=0.1, maximize=True)),
    ("Adam", dict(amsgrad=True, weight_decay=1e-2)),
    ("AdamW", dict(amsgrad=True)),
    ("AdamW", dict(maximize=True, max_grad_norm=0.5)),
]


@pytest.mark.parametrize("opt_name,options", OPTIONS, ids=lambda x: x if isinstance(x, str) else "-".join(x))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_bit_identical_for_any_thread_count(opt_name, options, dtype):
    """The vector loops and their scalar tails round alike (no contraction into FMAs anywhere), so where
    the threads split the element range changes nothing."""
    shapes = [(100_003,), (7, 13), (1,), (4099,)]
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            gen = torch.Generator().manual_seed(1)
            params = [nn.Parameter(torch.randn(s, generator=gen).to(dtype)) for s in shapes]
            opt = getattr(lrfused, opt_name)(params, lr=1e-2, schedule=S.OneCycleLR(0.05, total_steps=10),
                                             **options)
            for _ in range(4):
                for p in params:
                    p.grad = torch.randn(p.shape, generator=gen).to(dtype)
                opt.step(grad_scale=torch.tensor(3.0), found_inf=torch.zeros(()))
            results.append([p.detach().clone() for p in params] +
                           [v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for x, y in zip(results[0], other):
            assert torch.equal(x, y)


def test_long_sequential_schedules_are_valid_programs():
    # SequentialLR pushes one child at a time: any number of children fits the evaluator's stack.
    s = S.SequentialLR([S.ExponentialLR(0.9) for _ in range(40)], list(range(1, 40)))
    _ops._C.check_program(s.program(0, 1))
    assert s.lr_at(39, 1.0) == pytest.approx(1.0)


def test_negative_steps_evaluate_as_step_zero():
    program = _program(S.LambdaLR(lambda k: 1.0 / (k + 1), total_steps=4))
    lrs = ops.schedule_lrs(program, torch.tensor([-5, 0]), 1.0)
    assert lrs.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("program", [
    [float(contract.KIND.TABLE), 2.0], [float(contract.KIND.MULTI_STEP), 2.0], [float(contract.KIND.CYCLIC), 2.0],
    [float(contract.KIND.ONE_CYCLE), 2.0], [float(contract.KIND.STEP), 3.0, 0.5],
], ids=["TABLE", "MULTI_STEP", "CYCLIC", "ONE_CYCLE", "STEP"])
def test_nodes_cut_off_before_their_fields_are_refused(program):
    """A node shorter than its kind's fields would be read past its end by the evaluators."""
    with pytest.raises(RuntimeError, match="invalid schedule program.*shorter than its kind's fields"):
        _ops._C.check_program(torch.tensor(program, dtype=torch.float64))


def test_eager_op_path_keeps_the_step_bookkeeping():
    """eager_op_path() changes only how the update is launched: the schedule bound, what param_groups show
    and the step count are the eager path's, and so are the bits."""
    results = []
    for forced in (False, True):
        p = nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64))
        opt = lrfused.SGD([p], lr=0.1, momentum=0.9, schedule=S.LambdaLR(lambda k: 1.0 / (k + 1), 3))
        with lrfused.optim.eager_op_path() if forced else contextlib.nullcontext():
            for k in range(3):
                p.grad = torch.full_like(p, 0.5 + k)
                opt.step()
            p.grad = torch.ones_like(p)
            with pytest.raises(ValueError, match="past the end of the schedule"):
                opt.step()
        results.append((p.detach().clone(), [g["lr"] for g in opt.param_groups], opt.schedule_state.step,
                        opt.get_last_lr()))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1:] == results[1][1:]


def test_every_op_checks_sched_state_alike_before_writing():
    """One check of sched_state for every op (step_args.h check_sched_state): a tensor of no valid size is
    refused with the same message, and nothing is written."""
    bad = torch.zeros(SchedLayout.HEADER + 3, dtype=torch.float64)
    before = bad.clone()
    program = S.StepLR(2).program()
    calls = [
        lambda: ops.advance_(bad, None),
        lambda: ops.plateau_report_(bad, torch.tensor(1.0, dtype=torch.float64),
                                    S.ReduceLROnPlateau().plateau_config(1), 1),
        lambda: ops.fused_sgd_([], [], [], [], bad, program, 0, base_lr=0.1, momentum=0.0, dampening=0.0,
                               weight_decay=0.0, nesterov=False, maximize=False, master_params=[],
                       momentum_buffer_absmax=[]),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match="sched_state"):
            call()
        assert torch.equal(bad, before)


def test_grad_sq_norm_refuses_mixed_gradients():
    with pytest.raises(RuntimeError, match="one dtype per call"):
        ops.grad_sq_norm([torch.ones(3), torch.ones(3, dtype=torch.float64)], None)
    # a non-dense gradient is read through a copy, with the same result as a dense one
    g = torch.arange(12.0).reshape(3, 4)
    assert ops.grad_sq_norm([g.t()], None).item() == ops.grad_sq_norm([g], None).item() == float((g * g).sum())
