"""torch.compile over opt.step() and over whole training steps: no graph break (fullgraph=True), no
recompilation as the scheduled lr (and momentum) changes, and the same parameters as the eager run.
Also torch.library.opcheck on the optimizer ops (fused_sgd_, fused_adam_, advance_), on the CPU and on a GPU."""
import copy

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

import lrfused
from lrfused import contract
from lrfused import schedules as S
from lrfused.contract import SchedLayout

STEPS = 24


def _warmup_cosine():
    return S.SequentialLR([S.LinearLR(start_factor=0.1, total_iters=5),
                           S.CosineAnnealingLR(T_max=STEPS - 5, eta_min=1e-4)], milestones=[5])


CASES = {
    "adamw-warmup-cosine": (lrfused.AdamW, dict(lr=1e-2, weight_decay=0.1), _warmup_cosine),
    "sgd-onecycle-momentum": (lrfused.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True),
                              lambda: S.OneCycleLR(max_lr=0.05, total_steps=STEPS)),
    "adam-onecycle-beta1": (lrfused.Adam, dict(lr=1e-2, amsgrad=True),
                            lambda: S.OneCycleLR(max_lr=0.05, total_steps=STEPS, anneal_strategy="linear")),
    "adamw-hf-cosine": (lrfused.AdamW, dict(lr=3e-3),
                        lambda: S.get_schedule("cosine", num_warmup_steps=4, num_training_steps=STEPS)),
    "adamw-timm-cosine-noise": (lrfused.AdamW, dict(lr=1e-2),
                                lambda: S.timm.CosineLRScheduler(8, cycle_limit=2, warmup_t=3, t_in_epochs=False,
                                                                 noise_range_t=[4, 20])),
    "adam-deepspeed-onecycle-beta1": (lrfused.Adam, dict(lr=1e-2),
                                      lambda: S.deepspeed.OneCycle(1e-3, 1e-2, cycle_first_step_size=6,
                                                                   decay_lr_rate=0.2, decay_step_size=3)),
    "adamw-hyper-schedules": (lrfused.AdamW, dict(lr=1e-2, weight_decay=0.1, hyper_schedules={
        "weight_decay": S.LinearLR(1.0, 0.0, STEPS), "beta2": S.optax.linear_schedule(0.9, 0.999, 10),
        "eps": S.ExponentialLR(0.9)}), _warmup_cosine),
    "sgd-dampening-schedule": (lrfused.SGD, dict(lr=1e-2, momentum=0.9, dampening=0.5, weight_decay=1e-3,
                                                 hyper_schedules={"dampening": S.LinearLR(1.0, 0.0, 12),
                                                                  "weight_decay": "lr"}),
                               lambda: S.CosineAnnealingLR(STEPS)),
    "sgd-optax-sgdr-clamped-restarted": (lrfused.SGD, dict(lr=1e-2, momentum=0.9),
                                         lambda: S.optax.sgdr_schedule([
                                             dict(init_value=0.0, peak_value=0.05, warmup_steps=2, decay_steps=6),
                                             dict(init_value=0.0, peak_value=0.02, warmup_steps=1, decay_steps=8),
                                         ]).clamp(1e-3, 0.03).restart(10)),
}


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))


def _batch(i):
    g = torch.Generator().manual_seed(100 + i)
    return torch.randn(5, 8, generator=g), torch.randn(5, 3, generator=g)


def _loss(model, i):
    x, y = _batch(i)
    return nn.functional.mse_loss(model(x), y)


def _eager_run(case):
    cls, kw, make = CASES[case]
    model = _model()
    opt = cls(model.parameters(), schedule=make(), **kw)
    lrs = []
    for i in range(STEPS):
        _loss(model, i).backward()
        opt.step()
        opt.zero_grad()
        lrs.append(opt.get_last_lr()[0])
    return model, opt, lrs


def _assert_same_run(model, opt, ref_model, ref_opt):
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=0, atol=0)
        for key, value in ref_opt.state[q].items():
            torch.testing.assert_close(opt.state[p][key], value, rtol=0, atol=0)


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("case", sorted(CASES))
def test_compiled_step_fullgraph_without_recompiles(case):
    ref_model, ref_opt, ref_lrs = _eager_run(case)
    cls, kw, make = CASES[case]
    schedule = make()
    model = _model()
    opt = cls(model.parameters(), schedule=schedule, **kw)
    counter = CompileCounterWithBackend("aot_eager")

    @torch.compile(backend=counter, fullgraph=True)
    def step():
        opt.step()

    # The first step creates the optimizer state (a different Python path); take it eagerly, so that
    # every compiled call below is the same program with only the step counter's value changing.
    _loss(model, 0).backward()
    opt.step()
    opt.zero_grad()
    lrs = [opt.get_last_lr()[0]]
    for i in range(1, STEPS):
        _loss(model, i).backward()
        step()
        opt.zero_grad()
        lrs.append(opt.get_last_lr()[0])
        assert counter.frame_count == 1
    assert lrs == ref_lrs == [schedule.lr_at(k, kw["lr"]) for k in range(STEPS)]
    _assert_same_run(model, opt, ref_model, ref_opt)


def test_compiled_from_the_first_step_recompiles_only_for_state_creation():
    ref_model, ref_opt, _ = _eager_run("adamw-warmup-cosine")
    cls, kw, make = CASES["adamw-warmup-cosine"]
    model = _model()
    opt = cls(model.parameters(), schedule=make(), **kw)
    counter = CompileCounterWithBackend("aot_eager")

    @torch.compile(backend=counter, fullgraph=True)
    def step():
        opt.step()

    frames = []
    for i in range(STEPS):
        _loss(model, i).backward()
        step()
        opt.zero_grad()
        frames.append(counter.frame_count)
    # frame 1: the call that creates exp_avg/exp_avg_sq/step (guarded on the empty state);
    # frame 2: the steady state, reused for every later step whatever the lr.
    assert frames == [1] + [2] * (STEPS - 1)
    _assert_same_run(model, opt, ref_model, ref_opt)


@pytest.mark.parametrize("case", ["adamw-warmup-cosine", "sgd-onecycle-momentum"])
def test_compiled_whole_train_step(case):
    """forward, backward and opt.step() in one fullgraph compiled function (backward traced with
    torch._dynamo.config.trace_autograd_ops)."""
    ref_model, ref_opt, ref_lrs = _eager_run(case)
    cls, kw, make = CASES[case]
    model = _model()
    opt = cls(model.parameters(), schedule=make(), **kw)
    counter = CompileCounterWithBackend("aot_eager")

    def train_step(x, y):
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        return loss.detach()

    compiled = torch.compile(train_step, backend=counter, fullgraph=True)
    lrs, losses, ref_losses = [], [], []
    for i in range(STEPS):
        x, y = _batch(i)
        with torch._dynamo.config.patch(trace_autograd_ops=True):
            loss = train_step(x, y) if i == 0 else compiled(x, y)  # step 0 creates the state eagerly
        opt.zero_grad()
        losses.append(loss)
        lrs.append(opt.get_last_lr()[0])
        if i > 0:
            assert counter.frame_count == 1
    assert lrs == ref_lrs
    _assert_same_run(model, opt, ref_model, ref_opt)
    # the losses of the compiled run are those of the eager run
    ref2 = _model()
    opt2 = cls(ref2.parameters(), schedule=make(), **kw)
    for i in range(STEPS):
        loss = _loss(ref2, i)
        loss.backward()
        opt2.step()
        opt2.zero_grad()
        ref_losses.append(loss.detach())
    torch.testing.assert_close(torch.stack(losses), torch.stack(ref_losses), rtol=0, atol=0)


def test_compiled_forward_with_eager_backward_and_compiled_step():
    """The common split: compiled model, loss.backward() outside, compiled opt.step()."""
    ref_model, ref_opt, ref_lrs = _eager_run("adamw-warmup-cosine")
    cls, kw, make = CASES["adamw-warmup-cosine"]
    model = _model()
    opt = cls(model.parameters(), schedule=make(), **kw)
    model_counter = CompileCounterWithBackend("aot_eager")
    step_counter = CompileCounterWithBackend("aot_eager")
    compiled_model = torch.compile(model, backend=model_counter, fullgraph=True)
    step = torch.compile(opt.step, backend=step_counter, fullgraph=True)
    lrs = []
    for i in range(STEPS):
        x, y = _batch(i)
        nn.functional.mse_loss(compiled_model(x), y).backward()
        (opt.step if i == 0 else step)()
        opt.zero_grad()
        lrs.append(opt.get_last_lr()[0])
    assert model_counter.frame_count == 1 and step_counter.frame_count == 1
    assert lrs == ref_lrs
    for p, q in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.detach(), q.detach(), rtol=2e-6, atol=1e-7)  # compiled vs eager autograd


def test_compiled_step_with_inductor():
    ref_model, ref_opt, ref_lrs = _eager_run("sgd-onecycle-momentum")
    cls, kw, make = CASES["sgd-onecycle-momentum"]
    model = _model()
    opt = cls(model.parameters(), schedule=make(), **kw)
    counter = CompileCounterWithBackend("inductor")
    step = torch.compile(opt.step, backend=counter, fullgraph=True)
    lrs = []
    for i in range(STEPS):
        _loss(model, i).backward()
        (opt.step if i == 0 else step)()
        opt.zero_grad()
        lrs.append(opt.get_last_lr()[0])
    assert counter.frame_count == 1
    assert lrs == ref_lrs
    _assert_same_run(model, opt, ref_model, ref_opt)


def test_compiled_step_with_grad_scaler_attributes():
    """found_inf set by a GradScaler (as attributes) skips the step and does not advance the schedule,
    inside the compiled graph too."""
    cls, kw, make = CASES["adamw-warmup-cosine"]
    schedule = make()
    model = _model()
    opt = cls(model.parameters(), schedule=schedule, **kw)
    counter = CompileCounterWithBackend("aot_eager")
    step = torch.compile(opt.step, backend=counter, fullgraph=True)
    _loss(model, 0).backward()
    opt.step()
    opt.grad_scale = torch.tensor(1.0)
    opt.found_inf = torch.tensor(0.0)
    applied = []
    for i in range(1, 8):
        _loss(model, i).backward()
        opt.found_inf.fill_(1.0 if i in (3, 4) else 0.0)
        before = [p.detach().clone() for p in model.parameters()]
        step()
        opt.zero_grad()
        changed = any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
        assert changed == (i not in (3, 4))
        applied.append(opt.get_last_lr()[0])
    assert counter.frame_count == 1
    assert opt.scheduler.last_epoch == 6
    # skipped steps leave the lr of the previous applied step in place
    expected = [schedule.lr_at(k, kw["lr"]) for k in (1, 2, 2, 2, 3, 4, 5)]
    assert applied == expected


# ---- opcheck ----------------------------------------------------------------------------------------
# On the optimizer's own buffers, on the CPU and (the `device` fixture) on a GPU. The arguments come from the
# public surface: opt.state[p], Schedule.program() moved to the device, opt.schedule_state.tensor(device).

def _step_op_call(opt_cls, kw, schedule, device, grad_scale=None, found_inf=None, dtype=torch.float32):
    """(op, args, kwargs): the family's step op with param group 0's buffers, after a first step."""
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(*shape).to(device, dtype)) for shape in [(3,), (97,), (33, 17), (1,)]]
    opt = opt_cls(params, schedule=schedule, **kw)
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()  # creates the state: step 1 of the schedule
    for p in params:
        p.grad = torch.randn_like(p)
    group = opt.param_groups[0]
    states = [opt.state[p] for p in params]
    column = lambda key: [st[key] for st in states if key in st]  # noqa: E731
    head = (params, [p.grad for p in params])
    tail = ([st["step"] for st in states], opt.schedule_state.tensor(device),
            schedule.program(0, len(opt.param_groups)).to(device), 0)
    stochastic = bool(group["stochastic_rounding"])
    scalars = dict(base_lr=opt.schedule_state.base_lrs[0], weight_decay=float(group["weight_decay"]),
                   maximize=bool(group["maximize"]), grad_scale=grad_scale, found_inf=found_inf,
                   master_params=column("master_param"), stochastic_rounding=stochastic, sr_seed=opt._sr_seed,
                   sr_streams=list(range(len(params))) if stochastic else [])
    if isinstance(opt, lrfused.SGD):
        return (torch.ops.lrfused.fused_sgd_.default, head + (column("momentum_buffer"),) + tail,
                dict(scalars, momentum=float(group["momentum"]), dampening=float(group["dampening"]),
                     nesterov=bool(group["nesterov"]), momentum_buffer_absmax=column("momentum_buffer_absmax")))
    beta1, beta2 = group["betas"]
    return (torch.ops.lrfused.fused_adam_.default,
            head + (column("exp_avg"), column("exp_avg_sq"), column("max_exp_avg_sq")) + tail,
            dict(scalars, beta1=float(beta1), beta2=float(beta2), eps=float(group["eps"]),
                 amsgrad=bool(group["amsgrad"]), decoupled_weight_decay=isinstance(opt, lrfused.AdamW),
                 exp_avg_absmax=column("exp_avg_absmax"), exp_avg_sq_absmax=column("exp_avg_sq_absmax")))


OPCHECK_CASES = [
    (lrfused.SGD, dict(lr=0.1), S.StepLR(step_size=2)),
    (lrfused.SGD, dict(lr=0.1, momentum=0.9, weight_decay=1e-2), S.OneCycleLR(max_lr=0.5, total_steps=20)),
    (lrfused.Adam, dict(lr=1e-2, amsgrad=True, weight_decay=1e-2), _warmup_cosine()),
    (lrfused.AdamW, dict(lr=1e-2, maximize=True), S.get_schedule("linear", 2, 20)),
]
# bfloat16 parameters with master copies, or rounded stochastically (bf16 state too)
MEMORY_OPCHECK_CASES = [
    (lrfused.AdamW, dict(lr=1e-2, master_weights=True, state_dtype=torch.float32), _warmup_cosine()),
    (lrfused.AdamW, dict(lr=1e-2, stochastic_rounding=True), _warmup_cosine()),
    (lrfused.SGD, dict(lr=0.1, momentum=0.9, master_weights=True, stochastic_rounding=True), S.StepLR(2)),
    (lrfused.SGD, dict(lr=0.1, momentum=0.9, stochastic_rounding=True), S.StepLR(2)),
]


@pytest.mark.parametrize("opt_cls,kw,schedule", OPCHECK_CASES, ids=["sgd", "sgd-momentum", "adam-ams", "adamw"])
def test_opcheck_fused_step(opt_cls, kw, schedule, device):
    op, args, kwargs = _step_op_call(opt_cls, kw, schedule, device)
    torch.library.opcheck(op, args, kwargs)


@pytest.mark.parametrize("opt_cls,kw,schedule", MEMORY_OPCHECK_CASES,
                         ids=["adamw-master", "adamw-sr", "sgd-master-sr", "sgd-sr"])
def test_opcheck_fused_step_memory_options(opt_cls, kw, schedule, device):
    op, args, kwargs = _step_op_call(opt_cls, kw, schedule, device, dtype=torch.bfloat16)
    assert len(kwargs["master_params"]) == (4 if kw.get("master_weights") else 0)
    torch.library.opcheck(op, args, kwargs)


def test_opcheck_fused_step_with_grad_scale_and_found_inf(device):
    for found in (0.0, 1.0):
        op, args, kwargs = _step_op_call(lrfused.AdamW, dict(lr=1e-2), _warmup_cosine(), device,
                                         grad_scale=torch.tensor(1024.0, device=device),
                                         found_inf=torch.tensor(found, device=device))
        torch.library.opcheck(op, args, kwargs)


def test_opcheck_advance(device):
    layout = SchedLayout(2)
    state = torch.zeros(layout.size, dtype=torch.float64, device=device)
    state[layout.STEP] = 5.0
    torch.library.opcheck(torch.ops.lrfused.advance_.default, (state, None))
    torch.library.opcheck(torch.ops.lrfused.advance_.default, (state.clone(), torch.tensor(0.0, device=device)))
    torch.library.opcheck(torch.ops.lrfused.advance_.default, (state.clone(), torch.tensor(1.0, device=device)))


def _opcheck_samples(device):
    """op name -> [(args, kwargs)]: a sample call of every lrfused op (the step ops through _step_op_call)."""
    layout = SchedLayout(2)
    state = torch.zeros(layout.size, dtype=torch.float64, device=device)
    state[layout.region("plateau_lr")] = 0.1
    grads = [torch.randn(5, device=device), torch.randn(3, 4, device=device)]
    program = S.OneCycleLR(1.0, total_steps=10).program().to(device)
    sgd = _step_op_call(lrfused.SGD, dict(lr=0.1, momentum=0.9), S.StepLR(2), device)
    adam = _step_op_call(lrfused.AdamW, dict(lr=1e-2, amsgrad=True), _warmup_cosine(), device)
    return {
        "fused_sgd_": [sgd[1:]],
        "fused_adam_": [adam[1:]],
        "advance_": [((state.clone(), None), {})],
        "plateau_report_": [((state.clone(), torch.tensor(2.0, dtype=torch.float64, device=device),
                              S.ReduceLROnPlateau(patience=0).plateau_config(2), 2), {})],
        "greedy_report_": [((state.clone(), torch.zeros(contract.greedy_state_size(3), dtype=torch.float64,
                                                         device=device),
                             torch.tensor(2.0, dtype=torch.float64, device=device),
                             S.get_schedule("greedy", patience=0, smooth=True, window_size=3).greedy_config([0.1, 0.2]),
                             2), {})],
        "grad_sq_norm": [((grads, None), {}), ((grads, torch.tensor(8.0, device=device)), {})],
        "schedule_lrs": [((program, torch.arange(12, device=device), 0.5), {})],
        "schedule_momenta": [((program, torch.arange(12, device=device), 0.9), {})],
    }


def test_opcheck_on_every_op(device):
    """Every registered lrfused op passes torch.library.opcheck (schema, fake, autograd registration); an op
    added without a sample here fails."""
    samples = _opcheck_samples(device)
    registered = sorted(n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("lrfused::"))
    assert sorted(samples) == registered
    for name, calls in samples.items():
        for args, kwargs in calls:
            torch.library.opcheck(getattr(torch.ops.lrfused, name).default, args, kwargs)


def test_copy_of_compiled_optimizer_state_loads_into_eager():
    """A checkpoint taken from a compiled run resumes eagerly at the same position."""
    cls, kw, make = CASES["adamw-warmup-cosine"]
    ref_model, ref_opt, _ = _eager_run("adamw-warmup-cosine")
    model = _model()
    opt = cls(model.parameters(), schedule=make(), **kw)
    step = torch.compile(opt.step, backend="aot_eager", fullgraph=True)
    half = STEPS // 2
    for i in range(half):
        _loss(model, i).backward()
        (opt.step if i == 0 else step)()
        opt.zero_grad()
    sd = copy.deepcopy(opt.state_dict())
    model2 = copy.deepcopy(model)
    opt2 = cls(model2.parameters(), schedule=make(), **kw)
    opt2.load_state_dict(sd)
    for i in range(half, STEPS):
        _loss(model2, i).backward()
        opt2.step()
        opt2.zero_grad()
    _assert_same_run(model2, opt2, ref_model, ref_opt)
