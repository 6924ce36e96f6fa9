"""The contract floor (csrc/contract.h, read by lrfused.contract): every schedule kind packs by field name
and round-trips; the C++ reads each field where Python writes it; the sched_state layout, the plateau
configuration, the flags, the hyperparameter slots and the dtype pairs are the ones the kernels use."""
import math

import pytest
import torch

import lrfused
from lrfused import contract
from lrfused import schedules as S
from lrfused.contract import SchedLayout

# One schedule per node kind, with the fields (by name) it must pack to.
EXAMPLES = {
    "CONSTANT": (S.Constant(), {}),
    "TABLE": (S.LambdaLR(lambda k: 0.5 ** k, 3), {"count": 3}),
    "STEP": (S.StepLR(3, 0.5), {"step_size": 3, "gamma": 0.5}),
    "MULTI_STEP": (S.MultiStepLR([4, 2], 0.3), {"gamma": 0.3, "count": 2}),
    "CONSTANT_FACTOR": (S.ConstantLR(0.25, 4), {"factor": 0.25, "total_iters": 4}),
    "LINEAR": (S.LinearLR(0.5, 0.9, 7), {"start_factor": 0.5, "end_factor": 0.9, "total_iters": 7}),
    "EXPONENTIAL": (S.ExponentialLR(0.97), {"gamma": 0.97}),
    "POLYNOMIAL": (S.PolynomialLR(9, 2.0), {"total_iters": 9, "power": 2.0}),
    "COSINE": (S.CosineAnnealingLR(11, 0.01), {"T_max": 11, "eta_min": 0.01}),
    "COSINE_WARM_RESTARTS": (S.CosineAnnealingWarmRestarts(5, 2, 0.02), {"T_0": 5, "T_mult": 2, "eta_min": 0.02}),
    "CYCLIC": (S.CyclicLR(0.1, 1.0, 4, 6, mode="exp_range", gamma=0.9),
               {"base_lr": 0.1, "max_lr": 1.0, "total_size": 10, "step_ratio": 0.4,
                "scale": contract.ENUMS["cyclic_scale"]["EXP_RANGE"], "gamma": 0.9, "scale_mode": 1,
                "cycle_momentum": 1, "base_momentum": 0.8, "max_momentum": 0.9, "count": 0}),
    "ONE_CYCLE": (S.OneCycleLR(1.0, total_steps=20, anneal_strategy="linear"),
                  {"total_steps": 20, "anneal": contract.ENUMS["anneal"]["LINEAR"], "cycle_momentum": 1, "count": 2}),
    "PLATEAU": (S.ReduceLROnPlateau(), {}),
    "SEQUENTIAL": (S.SequentialLR([S.StepLR(2), S.ExponentialLR(0.9)], [5]), {"count": 2}),
    "CHAINED": (S.ChainedScheduler([S.StepLR(2), S.ExponentialLR(0.9)]), {"count": 2}),
    "PER_EPOCH": (S.StepLR(2).per_epoch(10), {"steps_per_epoch": 10}),
    "HF_CONSTANT_WITH_WARMUP": (S.get_schedule("constant_with_warmup", 3), {"warmup": 3}),
    "HF_LINEAR": (S.get_schedule("linear", 3, 30), {"warmup": 3, "total": 30}),
    "HF_COSINE": (S.get_schedule("cosine_with_min_lr", 3, 30, min_lr_rate=0.1),
                  {"warmup": 3, "total": 30, "num_cycles": 0.5, "min_lr_rate": 0.1, "min_lr": 0.0, "use_min_lr": 0}),
    "HF_COSINE_RESTARTS": (S.get_schedule("cosine_with_restarts", 3, 30, num_cycles=2),
                           {"warmup": 3, "total": 30, "num_cycles": 2}),
    "HF_POLYNOMIAL": (S.get_schedule("polynomial", 3, 30, lr_end=1e-4, power=2.0, lr_init=0.1),
                      {"warmup": 3, "total": 30, "lr_end": 1e-4, "power": 2.0, "lr_init": 0.1}),
    "HF_INVERSE_SQRT": (S.get_schedule("inverse_sqrt", 3, timescale=7), {"warmup": 3, "timescale": 7}),
    "HF_COSINE_WARMUP_MIN_LR": (S.get_schedule("cosine_warmup_with_min_lr", 3, 30, min_lr_rate=0.1, warmup_lr_rate=0.2),
                                {"warmup": 3, "total": 30, "num_cycles": 0.5, "min_lr_rate": 0.1, "min_lr": 0.0,
                                 "use_min_lr": 0, "has_warmup_rate": 1, "warmup_lr_rate": 0.2}),
    "HF_WSD": (S.get_schedule("warmup_stable_decay", 3, 30, num_decay_steps=10, decay_type="1-sqrt"),
               {"warmup": 3, "stable": 17, "decay": 10, "warmup_type": contract.ENUMS["wsd_shape"]["LINEAR"],
                "decay_type": contract.ENUMS["wsd_shape"]["ONE_MINUS_SQRT"], "min_lr_ratio": 0.0, "num_cycles": 0.5}),
    "CLAMP": (S.StepLR(2).clamp(0.1), {"min_lr": 0.1, "max_lr": math.inf}),
    "RESTART": (S.StepLR(2).restart(7), {"period": 7}),
    "NOISE": (S.timm.StepLRScheduler(5, t_in_epochs=False, noise_range_t=[2, 4]), {"start": 2, "count": 2}),
    "TIMM": (S.timm.StepLRScheduler(5, 0.5, warmup_t=2, t_in_epochs=False),
             {"shape": contract.ENUMS["timm_shape"]["STEP"], "t_initial": 1, "lr_min": 0, "cycle_mul": 1,
              "cycle_decay": 1, "cycle_limit": 1, "k_decay": 1, "lb": 0, "ub": 0, "power": 1, "decay_t": 5,
              "decay_rate": 0.5, "warmup_t": 2, "warmup_lr_init": 0, "warmup_prefix": 1, "count": 0}),
    "TIMM_WSD": (S.timm.WSDLRScheduler(20, 5, 0.01, "rsqrt", 4, decay_fn="exp", t_in_epochs=False),
                 {"t_initial": 20, "decay_t": 5, "lr_min": 0.01, "stable_fn": contract.ENUMS["timm_wsd_stable"]["RSQRT"],
                  "stable_timescale": 4, "stable_power": 0.5, "decay_fn": contract.ENUMS["timm_wsd_decay"]["EXP"],
                  "decay_power": 0.5, "decay_ratio": 0.1, "warmup_t": 0, "warmup_lr_init": 0, "count": 0}),
    "DS_WARMUP": (S.deepspeed.WarmupDecayLR(50, 0.001, 0.1, 10, "linear"),
                  {"variant": contract.ENUMS["ds_warmup"]["WARMUP_DECAY_LR"], "min_lr": 0.001, "max_lr": 0.1,
                   "max_is_base": 0, "warmup_num_steps": 10, "log_warmup": 0, "total_num_steps": 50,
                   "warmup_min_ratio": 0, "cos_min_ratio": 0}),
    "DS_RANGE_TEST": (S.deepspeed.LRRangeTest(0.01, 5, 2.0, True),
                      {"min_lr": 0.01, "step_size": 5, "step_rate": 2.0, "staircase": 1}),
    "DS_ONE_CYCLE": (S.deepspeed.OneCycle(0.01, 0.1, 0.5, 4, 6, 0, None, 3),
                     {"min_lr": 0.01, "max_lr": 0.1, "first_step_size": 4, "second_step_size": 6,
                      "first_stair_count": 0, "second_stair_count": 0, "decay_step_size": 3, "decay_lr_rate": 0.5,
                      "skip_lr_decay": 0, "cycle_momentum": 1, "min_mom": 0.8, "max_mom": 0.9, "decay_mom_rate": 0,
                      "skip_mom_decay": 1}),
    "OPTAX_POLYNOMIAL": (S.optax.polynomial_schedule(1.0, 0.1, 2.0, 10, 3),
                         {"init_value": 1.0, "end_value": 0.1, "power": 2.0, "transition_steps": 10,
                          "transition_begin": 3}),
    "OPTAX_EXPONENTIAL": (S.optax.exponential_decay(1.0, 4, 0.5, 2, True, 0.1),
                          {"init_value": 1.0, "transition_steps": 4, "decay_rate": 0.5, "transition_begin": 2,
                           "staircase": 1, "has_end": 1, "end_value": 0.1}),
    "OPTAX_COSINE": (S.optax.cosine_decay_schedule(1.0, 10, 0.1, 2.0),
                     {"init_value": 1.0, "decay_steps": 10, "alpha": 0.1, "exponent": 2.0}),
    "OPTAX_PIECEWISE_CONSTANT": (S.optax.piecewise_constant_schedule(1.0, {3: 0.5}), {"init_value": 1.0, "count": 1}),
    "OPTAX_PIECEWISE_INTERPOLATE": (S.optax.piecewise_interpolate_schedule("cosine", 1.0, {3: 0.5, 6: 2.0}),
                                    {"init_value": 1.0, "interpolate": contract.ENUMS["anneal"]["COS"], "count": 2}),
    "HYPERS": (None, {"count": 1, "wd_lr_reference": 1e-3}),  # packed by the optimizer: _program_of below
}


def _program_of(kind):
    schedule, _ = EXAMPLES[kind]
    if kind == "HYPERS":  # a group's lr schedule with its hyper_schedules
        opt = lrfused.AdamW([torch.nn.Parameter(torch.zeros(1))], schedule=S.StepLR(3),
                            hyper_schedules={"eps": S.StepLR(2), "weight_decay": "lr"})
        return opt.group_program(0)
    return schedule.program()


def test_every_kind_has_an_example():
    """A kind added to csrc/contract.h without a schedule that packs it fails here."""
    assert sorted(EXAMPLES) == sorted(vars(contract.KIND))


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_kind_packs_and_round_trips(kind):
    _, fields = EXAMPLES[kind]
    program = _program_of(kind)
    tree = contract.unpack(program)
    assert tree["kind"] == kind
    assert tree["fields"] == {name: float(v) for name, v in fields.items()}
    assert list(tree["fields"]) == list(contract.FIELDS[kind])  # slot order is the contract's
    # repacking the unpacked tree gives the same bytes, and the C++ validator accepts it
    def repack(t):
        return contract.node(t["kind"], t["fields"], t["tail"], [repack(c) for c in t["children"]])
    assert torch.equal(torch.tensor(repack(tree), dtype=torch.float64), program)
    lrfused._ops._C.check_program(program)


def test_tails_and_children_unpack():
    tree = contract.unpack(S.SequentialLR([S.StepLR(2), S.MultiStepLR([3, 1])], [5]).program())
    assert tree["tail"] == [5.0]
    assert [c["kind"] for c in tree["children"]] == ["STEP", "MULTI_STEP"]
    assert tree["children"][1]["tail"] == [1.0, 3.0]
    phases = contract.unpack(S.OneCycleLR(1.0, total_steps=20, three_phase=True).program())["tail"]
    width = len(contract.RECORDS["ONE_CYCLE_PHASE"])
    assert len(phases) == 3 * width
    assert phases[contract.RECORDS["ONE_CYCLE_PHASE"].index("end_step")] == pytest.approx(0.3 * 20 - 1)


# A field the C++ must read from the slot Python wrote it to: change it by name, see the lr follow.
FIELD_PROBES = [
    ("STEP", "gamma", 0.25, lambda k: 0.25 ** (k // 3), S.StepLR(3, 0.5)),
    ("EXPONENTIAL", "gamma", 0.5, lambda k: 0.5 ** k, S.ExponentialLR(0.9)),
    ("COSINE", "eta_min", 0.5, lambda k: 0.5 + 0.5 * (1 + math.cos(math.pi * k / 11)) / 2, S.CosineAnnealingLR(11)),
    ("LINEAR", "end_factor", 0.0, lambda k: 1.0 - min(k, 4) / 4, S.LinearLR(1.0, 1.0, 4)),
    ("HF_LINEAR", "total", 10, lambda k: k / 2 if k < 2 else max(0.0, (10 - k) / 8), S.get_schedule("linear", 2, 50)),
    ("TIMM", "decay_rate", 0.25, lambda k: 0.25 ** (k // 3), S.timm.StepLRScheduler(3, 0.5, t_in_epochs=False)),
    ("OPTAX_EXPONENTIAL", "decay_rate", 0.25, lambda k: 0.25 ** k, S.optax.exponential_decay(1.0, 1, 0.5)),
    ("DS_RANGE_TEST", "step_rate", 3.0, lambda k: 1.0 + 3.0 * k / 2, S.deepspeed.LRRangeTest(1.0, 2, 1.0)),
    ("OPTAX_COSINE", "alpha", 0.5, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, 8) / 8)) * 0.5 + 0.5,
     S.optax.cosine_decay_schedule(1.0, 8)),
]


@pytest.mark.parametrize("kind,name,value,expected,schedule", FIELD_PROBES, ids=[f"{p[0]}.{p[1]}" for p in FIELD_PROBES])
def test_cpp_reads_each_field_by_name(kind, name, value, expected, schedule):
    tree = contract.unpack(schedule.program())
    assert tree["kind"] == kind
    tree["fields"][name] = value
    program = torch.tensor(contract.node(kind, tree["fields"], tree["tail"]), dtype=torch.float64)
    lrs = torch.ops.lrfused.schedule_lrs(program, torch.arange(12), 1.0)
    assert lrs.tolist() == pytest.approx([expected(k) for k in range(12)], rel=1e-14, abs=1e-15)


def test_node_refuses_unknown_or_missing_fields():
    with pytest.raises(AssertionError):
        contract.node("STEP", {"step_size": 1})
    with pytest.raises(AssertionError):
        contract.node("STEP", {"step_size": 1, "gamma": 0.1, "extra": 2})


def test_sched_layout_is_what_the_kernels_write():
    p = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    q = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    opt = lrfused.SGD([{"params": [p]}, {"params": [q], "lr": 0.5}], lr=0.1, momentum=0.9,
                      schedule=S.OneCycleLR([1.0, 2.0], total_steps=10))
    for _ in range(3):
        p.grad, q.grad = torch.ones_like(p), torch.ones_like(q)
        opt.step()
    state = opt.schedule_state
    layout = state.layout
    raw = state.tensor("cpu")
    assert raw.numel() == layout.size == SchedLayout.HEADER + len(SchedLayout.REGIONS) * 2
    assert SchedLayout.groups_of(raw.numel()) == 2
    assert int(raw[SchedLayout.STEP]) == state.step == 3
    assert raw[layout.region("last_lr")].tolist() == opt.get_last_lr() == state.last_lrs
    schedule = opt.param_groups[0]["schedule"]
    assert state.next_lrs == [schedule.lr_at(3, group=g) for g in range(2)]
    assert state.next_momenta == [schedule.momentum_at(3, group=g) for g in range(2)]
    assert [g["lr"] for g in opt.param_groups] == state.next_lrs


def test_plateau_config_fields_reach_the_state_machine():
    schedule = S.ReduceLROnPlateau(mode="max", factor=0.5, patience=0, cooldown=1, min_lr=[0.3])
    config = schedule.plateau_config(1)
    assert len(config) == len(contract.PLATEAU_CONFIG) + 1
    layout = SchedLayout(1)
    state = torch.zeros(layout.size, dtype=torch.float64)
    state[layout.slot("plateau_lr", 0)] = 1.0
    for metric in (1.0, 0.5, 0.4, 0.3):  # mode max: 1.0 is best, the others are bad
        torch.ops.lrfused.plateau_report_(state, torch.tensor(metric, dtype=torch.float64), config, 1)
    # patience 0: the first bad metric halves; cooldown 1 skips the next; then halves again, floored at 0.3
    assert state[layout.slot("plateau_lr", 0)].item() == 0.3
    assert state[SchedLayout.PLATEAU_BEST].item() == 1.0
    assert state[SchedLayout.PLATEAU_EPOCH].item() == 4
    with pytest.raises(RuntimeError, match="config"):
        torch.ops.lrfused.plateau_report_(state, torch.tensor(0.1, dtype=torch.float64), config[:-2], 1)


def test_flags_and_hyper_slots():
    assert contract.HYPER_FIELDS["SGD"][0] == contract.HYPER_FIELDS["ADAM"][0] == "lr"
    assert "momentum" in contract.HYPER_FIELDS["SGD"] and "beta1" in contract.HYPER_FIELDS["ADAM"]
    flags = vars(contract.FLAG)
    assert sorted(flags) == ["amsgrad", "decoupled_weight_decay", "maximize", "nesterov", "stochastic_rounding"]
    assert all(v & (v - 1) == 0 and v > 0 for v in flags.values()) and len(set(flags.values())) == len(flags)


@pytest.mark.parametrize("param_dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("state_dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_dtype_pairs_are_the_kernels(param_dtype, state_dtype):
    """Exactly the contract's (param, state) dtype pairs construct and step; every other is refused before
    anything runs."""
    p = torch.nn.Parameter(torch.randn(4, dtype=param_dtype))
    if (param_dtype, state_dtype) not in contract.DTYPE_PAIRS:
        with pytest.raises(ValueError, match="state_dtype"):
            lrfused.Adam([p], state_dtype=state_dtype)
        return
    opt = lrfused.Adam([p], state_dtype=state_dtype)
    p.grad = torch.ones_like(p)
    opt.step()
    assert opt.state[p]["exp_avg"].dtype == state_dtype


def test_hypers_node_names_its_slots_by_the_contract():
    tree = contract.unpack(_program_of("HYPERS"))
    assert tree["tail"] == [contract.HYPER_FIELDS["ADAM"].index("eps")]
    assert [c["kind"] for c in tree["children"]] == ["STEP", "STEP"]  # the lr schedule first, then eps's
    assert [c["fields"]["step_size"] for c in tree["children"]] == [3, 2]
