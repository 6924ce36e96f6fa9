"""The optimizer base shared by lrfused's families: construction and param groups, per-parameter state,
``step()`` and ``report()``. The rooms it is built from: ``checks`` (arguments), ``schedule_state`` (the
on-device schedule state and what param_groups show), ``step`` (buckets, launch plan, op path),
``checkpoint`` (state_dict, pickling); each family (``sgd``, ``adam``) is a small declarative class."""
from __future__ import annotations

import math
import torch

from .. import contract
from .. import schedules as _schedules
from .._ops import _C as _ops_C
from . import quantized as _quant
from .checkpoint import CheckpointMixin
from .checks import (MASTER_KEY, _check_no_shared_memory, _check_torch_keywords, _is_dtensor, _is_number, _real_dtype,
                     _rounds_stochastically, _takes_master)
from .schedule_state import ScheduleStateMixin
from .step import StepMixin



# Group keys of the memory options (every family's keywords).
_MEMORY_OPTIONS = ("stochastic_rounding", "master_weights", "optim_bits")


class _FusedOptimizer(StepMixin, ScheduleStateMixin, CheckpointMixin, torch.optim.Optimizer):
    """The machinery shared by lrfused's optimizers. A family defines ``_FAMILY`` (its name in the contract),
    ``_validate_group``, ``_state_keys``, ``_FLAG_KEYS`` (group key -> contract flag), ``_hyper`` (the
    contract's hyperparameter names -> values) and ``_call_step_op`` (its registered op)."""

    _FAMILY = ""
    _FLAG_KEYS: dict = {}  # group key -> the contract's flag name
    _QUANTIZED_KEYS: dict = {}  # state key -> "signed" / "unsigned": what optim_bits=8 stores in 8 bits
    _ABSMAX_ARGS: tuple = ()  # the family op's argument names of those keys' block scales
    _FLAG_DEFAULTS: dict = {}  # group key -> its value when a group (an older checkpoint's) lacks it
    plan_builds = 0  # how many times the eager launch plan was built (a diagnostic)
    _MOMENTUM_HYPER = ""  # the hyperparameter a momentum-cycling schedule sets
    # torch.amp.GradScaler hands grad_scale/found_inf to step() (as attributes) instead of unscaling
    # the gradients itself, as for torch's fused optimizers.
    _step_supports_amp_scaling = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls._FAMILY:
            cls._KIND = getattr(contract.OPTIMIZER, cls._FAMILY)
            cls._HYPER_ORDER = contract.HYPER_FIELDS[cls._FAMILY]
            # (group key, flag bit, value when the group lacks the key), resolved once per class
            cls._FLAG_BITS = tuple((key, getattr(contract.FLAG, flag), cls._FLAG_DEFAULTS.get(key, False))
                                   for key, flag in cls._FLAG_KEYS.items())

    def __init__(self, params, defaults: dict, schedule, state_dtype, max_grad_norm, stochastic_rounding_seed=None):
        """``defaults``: the family's group defaults, torch's keywords (foreach, fused, differentiable) and the
        memory options (stochastic_rounding, master_weights) included; checked here, before anything else, as
        torch checks them."""
        _check_torch_keywords(defaults["foreach"], defaults["fused"], defaults["differentiable"])
        defaults = dict(defaults, hyper_schedules=self._normalized_hyper_schedules(defaults.get("hyper_schedules")))
        self._check_group(defaults)
        if schedule is None:
            schedule = _schedules.Constant()
        if not isinstance(schedule, _schedules.Schedule):
            raise TypeError(f"lrfused: schedule must be a lrfused.schedules.Schedule, got {type(schedule).__name__}")
        if state_dtype is not None and state_dtype not in contract.STATE_DTYPES:
            raise TypeError(f"lrfused: state_dtype must be one of {sorted(map(str, contract.STATE_DTYPES))} or None, "
                            f"got {state_dtype}")
        if max_grad_norm is not None:
            if isinstance(max_grad_norm, bool) or not _is_number(max_grad_norm):
                raise TypeError(f"lrfused: max_grad_norm must be a positive number or None, got {max_grad_norm!r}")
            if not 0.0 < max_grad_norm < math.inf:
                raise ValueError(f"lrfused: max_grad_norm must be a positive finite number, got {max_grad_norm}")
        if stochastic_rounding_seed is None:
            # torch's seed (torch.manual_seed's), so that a seeded run repeats, without drawing from torch's
            # generator: constructing an optimizer leaves every later random number as torch.optim leaves it
            stochastic_rounding_seed = torch.initial_seed() % 2**63
        elif isinstance(stochastic_rounding_seed, bool) or not isinstance(stochastic_rounding_seed, int):
            raise TypeError(f"lrfused: stochastic_rounding_seed must be an int or None, "
                            f"got {type(stochastic_rounding_seed).__name__}")
        elif not 0 <= stochastic_rounding_seed < 2**63:
            raise ValueError(f"lrfused: stochastic_rounding_seed must be in [0, 2**63), got {stochastic_rounding_seed}")
        self._sr_seed = stochastic_rounding_seed
        defaults = dict(defaults, schedule=schedule)
        self._state_dtype = state_dtype
        self._max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        # [total grad norm, clip factor] on the parameters' device: float64 on the CPU (exact for fp64
        # parameters), float32 elsewhere (what the CUDA kernels read).
        self._clip_buffer = None
        self._plan = None
        self._plan_signature = None
        self._sched_states: dict[torch.device, torch.Tensor] = {}
        self._report_states: dict[torch.device, torch.Tensor] = {}  # see _report_state
        # (group index, number of groups, device) -> (schedule, its program on that device): packed and
        # copied once, since a host-to-device copy per step would synchronise and break graph capture.
        self._programs: dict[tuple, tuple] = {}
        self._host_steps = 0  # step() calls; an upper bound of the device's k (skipped steps do not count there)
        self._shown = {}  # group index -> the object lrfused last put in group["lr"]
        self._lr_views = None  # (group, next-lr view, next-momentum view) per shown group, built lazily
        self._constructing = True  # torch adds the groups one by one; their schedules are checked once all are in
        super().__init__(params, defaults)
        self._constructing = False
        self._check_memory_options(self.param_groups)
        self._check_group_schedules(self.param_groups)
        for g in range(len(self.param_groups)):
            self._show_first_step(g)

    # ---- groups -------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        schedule = param_group.get("schedule", self.defaults.get("schedule"))
        if not isinstance(schedule, _schedules.Schedule):
            raise TypeError(f"lrfused: a param group's schedule must be a lrfused.schedules.Schedule, "
                            f"got {type(schedule).__name__}")
        candidate = dict(self.defaults)
        candidate.update(param_group)
        if "hyper_schedules" in param_group:
            candidate["hyper_schedules"] = self._normalized_hyper_schedules(param_group["hyper_schedules"])
            param_group = dict(param_group, hyper_schedules=candidate["hyper_schedules"])
        self._check_group(candidate)
        params = param_group["params"]
        if isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but the ordering "
                            "of tensors in sets will change between runs. Please use a list instead.")
        # Listed once, here: a generator (model.parameters()) would be exhausted by the checks below.
        entries = [params] if isinstance(params, torch.Tensor) else list(params)
        param_group = dict(param_group, params=entries)
        params = [e[1] if isinstance(e, tuple) and len(e) == 2 else e for e in entries]  # named parameters
        devices = set()
        for p in params:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"lrfused: params must be Tensors, got {type(p).__name__}")
            if not (p.is_floating_point() or p.is_complex()):
                raise TypeError(f"lrfused: can only optimize floating-point or complex tensors, got {p.dtype}")
            if _real_dtype(p) not in contract.PARAM_DTYPES:
                raise TypeError(f"lrfused: unsupported parameter dtype {p.dtype}")
            wanted = self._state_dtype
            if wanted is not None and not p.is_complex() and (p.dtype, wanted) not in contract.DTYPE_PAIRS:
                raise ValueError(f"lrfused: state_dtype={wanted} is not supported for {p.dtype} parameters; "
                                 f"supported: the parameter's dtype, float32 state for bfloat16/float16 "
                                 f"parameters, bfloat16 state for float32 parameters")
            devices.add(p.device)
        if len(devices) > 1:
            raise ValueError(f"lrfused: all parameters of a param group must be on one device, got {sorted(map(str, devices))}")
        existing = [q for group in getattr(self, "param_groups", []) for q in group["params"]]
        _check_no_shared_memory(existing + params)
        if not self._constructing:
            self._check_group_schedules(self.param_groups + [candidate])
            explicit = {k: v for k, v in param_group.items() if k in _MEMORY_OPTIONS}
            self._check_memory_options([dict(explicit, params=params)])
            self._check_no_8bit_dtensor([dict(candidate, params=params)])
        super().add_param_group(param_group)
        if not self._constructing:
            self._show_first_step(len(self.param_groups) - 1)
        # Known once per parameter set, not scanned per step.
        self._has_dtensor = getattr(self, "_has_dtensor", False) or any(_is_dtensor(p) for p in params)
        self._invalidate()

    def _check_group_schedules(self, groups) -> None:
        """Every group's schedules pack for its index among ``groups``: a per-group list (OneCycleLR's
        max_lr=[...], GreedyLR's min_lr=[...]) must have one entry per group (torch's ValueError), checked
        before anything changes."""
        for g, group in enumerate(groups):
            self._group_program(group, g, len(groups))
            if group["schedule"].is_plateau:
                group["schedule"]._report_config([0.0] * len(groups))

    # ---- hyperparameter schedules ----------------------------------------------------------------
    @classmethod
    def _schedulable_hypers(cls) -> tuple:
        """The hyperparameters of this family that may take a schedule besides the lr (and the momentum /
        beta1, which the lr schedule cycles): contract.HYPER_FIELDS minus those."""
        return tuple(n for n in contract.HYPER_FIELDS[cls._FAMILY] if n not in ("lr", cls._MOMENTUM_HYPER, "unused"))

    @classmethod
    def _normalized_hyper_schedules(cls, value) -> dict:
        """``hyper_schedules``: {name: Schedule} for names of ``_schedulable_hypers`` (weight_decay may also be
        "lr": scaled by lr_k / base_lr, timm's corrected_weight_decay). Checked here, before anything changes."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise TypeError(f"lrfused: hyper_schedules must be a dict {{name: Schedule}}, got {type(value).__name__}")
        allowed = cls._schedulable_hypers()
        out = {}
        for name, s in value.items():
            if name not in allowed:
                raise ValueError(f"lrfused: hyper_schedules: {cls.__name__} schedules {', '.join(allowed)} (the lr "
                                 f"and {cls._MOMENTUM_HYPER} through `schedule`), got {name!r}")
            if name == "weight_decay" and s == "lr":
                out[name] = s
                continue
            if not isinstance(s, _schedules.Schedule):
                alternative = ' or "lr"' if name == "weight_decay" else ""
                raise TypeError(f"lrfused: hyper_schedules[{name!r}] must be a lrfused.schedules.Schedule{alternative}, "
                                f"got {type(s).__name__}")
            if s.is_plateau or any(c.is_plateau for c in getattr(s, "schedules", ())):
                raise ValueError(f"lrfused: hyper_schedules[{name!r}]: a metric-driven schedule drives the lr only")
            out[name] = s
        return out

    def _check_memory_options(self, groups) -> None:
        """stochastic_rounding / master_weights asked for where they apply to no parameter (say, a model with
        only float32 parameters) is a mistake worth saying: raised, naming the option, before anything
        changes. Among several groups one that applies is enough: a model mixes bfloat16 weights with
        float32 norms, and an option leaves the parameters it is not meant for as they are."""
        params = [(p, g) for g in groups for p in g["params"]]
        if not params:
            return
        if any(g.get("master_weights") for g in groups) and not any(
                _takes_master(p) for p, g in params if g.get("master_weights")):
            raise ValueError("lrfused: master_weights=True applies to bfloat16 and float16 parameters, and there "
                             "are none among the parameters it was asked for")
        self._check_no_8bit_dtensor(groups)
        if any(g.get("optim_bits", 32) == 8 for g in groups) and not any(
                _quant.quantizes(p, g) for p, g in params if g.get("optim_bits", 32) == 8):
            raise ValueError(f"lrfused: optim_bits=8 applies to float32, bfloat16 and float16 parameters of at least "
                             f"{contract.MIN_QUANT_NUMEL} elements (smaller ones keep full-precision state), and there "
                             f"are none among the parameters it was asked for")
        if any(g.get("stochastic_rounding") for g in groups) and not any(
                _rounds_stochastically(p, self._state_dtype_for(p), bool(g.get("master_weights")) and _takes_master(p))
                for p, g in params if g.get("stochastic_rounding")):
            raise ValueError("lrfused: stochastic_rounding=True applies to bfloat16 parameters (without master "
                             "weights) and bfloat16 state (state_dtype=torch.bfloat16), and there are none among the "
                             "parameters it was asked for")

    @staticmethod
    def _check_no_8bit_dtensor(groups) -> None:
        if any(_is_dtensor(p) for g in groups if g.get("optim_bits", 32) == 8 for p in g["params"]):
            raise ValueError("lrfused: optim_bits=8 does not support DTensor (FSDP2) parameters yet: its block "
                             "scales would have to follow each rank's shard; use optim_bits=32 for them")

    def _check_groups_now(self) -> None:
        """Every group as it is now (a user may have edited group["optim_bits"] or ["master_weights"] since the
        last step), checked before the state is converted or created for it."""
        for group in self.param_groups:
            self._check_group(group)
        self._check_no_8bit_dtensor(self.param_groups)

    def _check_group(self, group: dict) -> None:
        for key in ("stochastic_rounding", "master_weights"):
            if not isinstance(group.get(key, False), bool):
                raise TypeError(f"lrfused: {key} must be True or False, got {group[key]!r}")
        bits = group.get("optim_bits", 32)
        if isinstance(bits, bool) or bits not in _quant.OPTIM_BITS:
            raise ValueError(f"lrfused: optim_bits must be 32 or 8, got {bits!r}")
        if bits == 8 and group.get("amsgrad"):
            raise ValueError("lrfused: optim_bits=8 does not support amsgrad (its max_exp_avg_sq would need a "
                             "quantization of its own); use optim_bits=32 for amsgrad groups")
        self._validate_group(group)
        if not isinstance(group.get("hyper_schedules", {}), dict):
            raise TypeError("lrfused: hyper_schedules must be a dict")
        self._check_hyper_schedules_fit(group)

    def _check_hyper_schedules_fit(self, group: dict) -> None:
        """Family rules a hyperparameter schedule could break (SGD: Nesterov needs zero dampening)."""

    def group_program(self, group_index: int) -> torch.Tensor:
        """The packed float64 program the kernels evaluate for param group ``group_index`` (a fresh CPU tensor):
        its schedule's program, or, with ``hyper_schedules``, a HYPERS node holding it and those schedules."""
        if not isinstance(group_index, int) or not 0 <= group_index < len(self.param_groups):
            raise ValueError(f"lrfused: group_index must be in [0, {len(self.param_groups)}), got {group_index!r}")
        return self._group_program(self.param_groups[group_index], group_index, len(self.param_groups)).clone()

    def _group_program(self, group: dict, g: int, num_groups: int) -> torch.Tensor:
        """The program the kernels evaluate for group g: its lr schedule, or a HYPERS node holding it and the
        schedules of its other hyperparameters (csrc/contract.h)."""
        hyper = group.get("hyper_schedules") or {}
        if not hyper:
            return group["schedule"].program(g, num_groups)
        fields = contract.HYPER_FIELDS[self._FAMILY]
        scheduled = sorted((fields.index(name), s) for name, s in hyper.items() if not isinstance(s, str))
        # timm's corrected weight decay divides by max_lr_snapshot: the optimizer's lr, for every group
        reference = self._value(self.defaults["lr"]) if hyper.get("weight_decay") == "lr" else 0.0
        node = contract.node("HYPERS", {"count": len(scheduled), "wd_lr_reference": reference},
                             tail=[slot for slot, _ in scheduled],
                             children=[group["schedule"]._pack_node(g, num_groups)]
                             + [s._pack_node(g, num_groups) for _, s in scheduled])
        program = torch.tensor(node, dtype=torch.float64)
        if not torch.compiler.is_compiling():
            _ops_C.check_program(program)
        return program

    def _show_first_step(self, g: int) -> None:
        """What group g shows before any step, as torch's scheduler leaves it when built: lr the first step
        applies (initial_lr keeps the base) and, for a momentum-cycling schedule, momentum / beta1."""
        group = self.param_groups[g]
        if self._scheduled(group):
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = self._lr_at(g, 0)
            self._shown[g] = group["lr"]
        if group["schedule"].cycles_momentum:
            self._set_momentum(group, self._momentum_at(g, 0))

    def _invalidate(self) -> None:
        self._plan = None

    # ---- state ---------------------------------------------------------------------------------
    def _state_dtype_for(self, p: torch.Tensor) -> torch.dtype:
        if self._state_dtype is None or p.is_complex():
            return p.dtype
        return self._state_dtype

    @torch.no_grad()
    def sync_master_weights(self) -> None:
        """With master_weights=True the float32 master is the value the optimizer updates, and each step
        writes the 16-bit parameter as its rounding (apex's and TransformerEngine's semantics): a change made
        to a parameter directly (clamping, loading weights into the model after the optimizer) is replaced
        at the next step. Call this after such a change: every master becomes its parameter's value."""
        for group in self.param_groups:
            for p in group["params"]:
                master = self.state.get(p, {}).get(MASTER_KEY)
                if master is not None:
                    master.copy_(p.detach())

    def _init_state(self, p: torch.Tensor, group: dict, create_master: bool = True) -> None:
        state = self.state[p]
        dtype = self._state_dtype_for(p)
        if "step" not in state:
            # SGD's buffer may come from a torch checkpoint, which keeps no step: a buffer means "not first".
            started = state.get("momentum_buffer") is not None
            state["step"] = torch.tensor(1.0 if started else 0.0, dtype=torch.float32, device=p.device)
        quantized = _quant.quantizes(p, group)
        for key in self._state_keys(group):
            value, signed = state.get(key), self._QUANTIZED_KEYS.get(key) == "signed"
            if quantized and key in self._QUANTIZED_KEYS:
                if value is None:  # all zeros: any code times an absmax of 0
                    state[key] = torch.zeros_like(p, dtype=torch.uint8, memory_format=torch.preserve_format)
                    state[_quant.absmax_key(key)] = torch.zeros(-(-p.numel() // contract.QUANT_BLOCK),
                                                                dtype=torch.float32, device=p.device)
                elif value.dtype != torch.uint8:  # full precision (a checkpoint, or optim_bits changed)
                    state[key], state[_quant.absmax_key(key)] = _quant.quantize_like(value, p, signed)
                elif not _quant.same_layout(value, p):  # codes of another memory format: blocks follow memory
                    absmax = state[_quant.absmax_key(key)]
                    values = _quant.dequantize_like(value, absmax, value, signed, torch.float32)
                    state[key], state[_quant.absmax_key(key)] = _quant.quantize_like(values, p, signed)
            elif value is None:
                state[key] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            elif value.dtype == torch.uint8:  # 8-bit (a checkpoint, or optim_bits changed): widened
                state[key] = _quant.dequantize_like(value, state.pop(_quant.absmax_key(key)), p, signed, dtype)
        if group.get("master_weights") and _takes_master(p):
            master = state.get(MASTER_KEY)
            if master is None:
                # new, or a checkpoint without one (torch's): the parameter's value at the first step after the
                # load (made then, so that weights loaded into the model after the optimizer are the ones used)
                if create_master:
                    state[MASTER_KEY] = p.detach().to(dtype=torch.float32, memory_format=torch.preserve_format,
                                                      copy=True)
            elif not _quant.same_layout(master, p):  # the model's memory format changed: the master follows
                state[MASTER_KEY] = torch.empty_like(p, dtype=torch.float32,
                                                     memory_format=torch.preserve_format).copy_(master)
        else:
            state.pop(MASTER_KEY, None)

    def _state_keys(self, group) -> tuple:
        raise NotImplementedError

    # ---- the launch plan -----------------------------------------------------------------------
    def _signature(self):
        """What the launch plan is built from. Hyperparameters are not part of it: they are handed to the
        plan at every step, so a torch scheduler or a user writing group["lr"] costs no rebuild."""
        return tuple((self._flags(g), self._state_keys(g), id(g["schedule"]), len(g["params"]),
                      bool(g.get("master_weights")), g.get("optim_bits", 32)) for g in self.param_groups)

    def _hyper_list(self, group) -> list:
        """The group's per-step hyperparameters in the contract's slot order (slots a family does not use: 0)."""
        values = self._hyper(group)
        return [values.get(name, 0.0) for name in self._HYPER_ORDER]

    def _flags(self, group) -> int:
        flags = 0
        for key, bit, default in self._FLAG_BITS:
            if group.get(key, default):
                flags |= bit
        return flags

    def _lr_hyper(self, group) -> float:
        return self._base_lr(group)

    def _value(self, x) -> float:
        """A hyperparameter as a float. A tensor (torch takes lr and betas as tensors) is read when it is new
        or was changed in place (its version counter moved), not at every step: on a GPU each read is a
        synchronisation. A value changed inside a captured CUDA graph is therefore not seen by it."""
        if not isinstance(x, torch.Tensor):
            return float(x)
        if x.device.type == "cpu":
            return float(x)
        cache = self.__dict__.setdefault("_tensor_values", {})
        if len(cache) > 16 * len(self.param_groups) + 16:  # tensors replaced over time: keep it small
            cache.clear()
        hit = cache.get(id(x))
        if hit is not None and hit[0] is x and hit[1] == x._version:
            return hit[2]
        value = float(x)
        cache[id(x)] = (x, x._version, value)
        return value

    # ---- stepping ------------------------------------------------------------------------------
    def _check_schedule_bounds(self) -> None:
        k = self._host_steps
        cpu_state = self._sched_states.get(torch.device("cpu"))
        if cpu_state is not None:
            k = int(cpu_state[contract.SchedLayout.STEP])  # exact and free on the CPU
        for group in self.param_groups:
            for schedule in (group["schedule"], *(s for s in (group.get("hyper_schedules") or {}).values()
                                                   if not isinstance(s, str))):
                last = schedule.max_step()
                if last is not None and k > last:
                    raise ValueError(f"lrfused: step {k} is past the end of the schedule {schedule!r}, "
                                     f"which allows steps 0..{last} (torch's scheduler raises here too)")

    @torch.no_grad()
    def step(self, closure=None, *, grad_scale: torch.Tensor | None = None, found_inf: torch.Tensor | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if torch.compiler.is_compiling():  # traced: the ops with every tensor an argument, nothing host-side
            self._op_step(getattr(self, "grad_scale", None) if grad_scale is None else grad_scale,
                          getattr(self, "found_inf", None) if found_inf is None else found_inf)
            return loss
        if grad_scale is None:
            grad_scale = getattr(self, "grad_scale", None)
        if found_inf is None:
            found_inf = getattr(self, "found_inf", None)
        for name, t in (("grad_scale", grad_scale), ("found_inf", found_inf)):
            if t is not None and not isinstance(t, torch.Tensor):
                raise TypeError(f"lrfused: {name} must be a Tensor or None, got {type(t).__name__}")
        self._check_schedule_bounds()
        undo = self._absorb_lr_writes()
        try:
            self._fused_step(grad_scale, found_inf)
        except BaseException:
            undo()  # a refused step changes nothing, the bookkeeping of an lr write included
            raise
        self._host_steps += 1
        self._publish_lrs()
        return loss

    # ---- schedule queries ----------------------------------------------------------------------
    @property
    def scheduler(self):
        """An LRScheduler-compatible handle (step() is a no-op: the schedule advances inside
        optimizer.step()), for trainers that want an (optimizer, scheduler) pair."""
        from ..scheduler_handle import LRSchedulerHandle

        handle = self.__dict__.get("_scheduler_handle")
        if handle is None:
            handle = self.__dict__["_scheduler_handle"] = LRSchedulerHandle(self)
        return handle

    def report(self, metric) -> None:
        """Feeds ReduceLROnPlateau: a Python number, or a 0-dim tensor consumed on the device."""
        plateau = self._plateau_schedule()
        if plateau is None:
            raise RuntimeError("lrfused: report() needs a ReduceLROnPlateau schedule in some param group; "
                               "this optimizer has none")
        if isinstance(metric, torch.Tensor):
            if metric.numel() != 1:
                raise ValueError(f"lrfused: report() takes a 0-dim tensor, got shape {tuple(metric.shape)}")
            if metric.device.type == "cpu" and math.isnan(float(metric)):
                raise ValueError("lrfused: report() got a NaN metric")
        elif _is_number(metric):
            if math.isnan(metric):
                raise ValueError("lrfused: report() got a NaN metric")
        else:
            raise TypeError(f"lrfused: report() takes a number or a 0-dim tensor, got {type(metric).__name__}")
        devices = {p.device for group in self.param_groups for p in group["params"]} or {torch.device("cpu")}
        num_groups = len(self.param_groups)
        config = plateau._report_config([self._base_lr(group) for group in self.param_groups])
        if num_groups > contract.PLATEAU_MAX_GROUPS_CUDA and any(d.type == "cuda" for d in devices):
            raise ValueError(f"lrfused: report() on CUDA supports up to {contract.PLATEAU_MAX_GROUPS_CUDA} param "
                             f"groups (the metric machine's configuration is a kernel argument), got {num_groups}")
        for device in devices:
            self._sched_state(device)
            self._report_state(device, plateau)
        self._absorb_lr_writes()  # a write before the report is the lr the plateau reduces from, as in torch
        for device in devices:
            value = metric if isinstance(metric, torch.Tensor) else torch.tensor(float(metric), dtype=torch.float64)
            plateau._report(self._sched_state(device), self._report_state(device, plateau),
                            value.to(device=device, dtype=torch.float64).reshape(()), config, num_groups)
        self._publish_lrs()

    def _report_state(self, device: torch.device, plateau) -> torch.Tensor:
        """The state a metric-driven schedule keeps besides sched_state (GreedyLR's counters and smoothing
        window), per device, zero (fresh) until the first report. None kept for schedules without one
        (ReduceLROnPlateau), so checkpoints carry only real state."""
        size = plateau._report_state_size()
        if size == 0:
            self._report_states.pop(device, None)
            return torch.zeros(0, dtype=torch.float64, device=device)
        state = self._report_states.get(device)
        if state is None or state.numel() != size:
            state = self._report_states[device] = torch.zeros(size, dtype=torch.float64, device=device)
        return state
