"""SGD, Adam and AdamW: torch.optim.Optimizer subclasses whose step() applies the scheduled learning
rate inside one fused kernel pass (see ../shared/API.md).

Per (param group, device, dtype) "bucket" the optimizer hands its buffers once to a C++ launch plan;
a step is then one call that gathers the gradients in C++, checks them, updates every bucket and
advances the on-device step counter. Under torch.compile the same kernels are reached through the
registered ops with every tensor an explicit argument.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import torch

from . import schedules as _schedules
from ._ops import _C, ops

_SGD, _ADAM = 0, 1
_FLAG_AMSGRAD, _FLAG_NESTEROV, _FLAG_MAXIMIZE, _FLAG_DECOUPLED_WD = 1, 2, 4, 8
# sched_state layout: defined in csrc/lrf_common.h, read from the extension
_LAYOUT = _C.sched_layout()
_SCHED_STEP, _PLATEAU_BEST, _PLATEAU_BAD, _PLATEAU_COOLDOWN, _PLATEAU_EPOCH, _LAST_LR = (
    _LAYOUT[k] for k in ("step", "plateau_best", "plateau_bad", "plateau_cooldown", "plateau_epoch", "last_lr"))
_SLOTS_PER_GROUP = _LAYOUT["slots_per_group"]


def _sched_size(num_groups: int) -> int:
    return _LAST_LR + _SLOTS_PER_GROUP * num_groups


def _plateau_lr_slot(num_groups: int, g: int) -> int:
    return _LAST_LR + num_groups + g


def _next_lr_slot(num_groups: int, g: int) -> int:
    return _LAST_LR + 2 * num_groups + g


def _next_momentum_slot(num_groups: int, g: int) -> int:
    return _LAST_LR + 3 * num_groups + g

_STATE_DTYPES = {torch.float32, torch.float64, torch.bfloat16, torch.float16}
# (parameter dtype, state dtype) pairs the kernels implement besides state in the parameter's dtype
_MIXED_STATE = {(torch.bfloat16, torch.float32), (torch.float16, torch.float32), (torch.float32, torch.bfloat16)}


def _is_number(x) -> bool:
    """A real number: Python's or numpy's (numbers.Real), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_scalar_tensor(x) -> bool:
    return isinstance(x, torch.Tensor) and x.numel() == 1 and not x.is_complex()


def _check_nonnegative(value, name: str, message: str, tensor_ok: bool = True) -> None:
    """torch's check of a hyperparameter: a number, or (where torch takes one) a one-element tensor, >= 0.
    A tensor's value is read once here (on a GPU that synchronises once, at construction)."""
    if isinstance(value, torch.Tensor):
        if not tensor_ok:
            raise TypeError(f"lrfused: {name} must be a number, got a Tensor (torch takes only a number here)")
        if not _is_scalar_tensor(value):
            raise ValueError(f"Tensor {name} must be 1-element")
        number = float(value)
    elif _is_number(value):
        number = float(value)
    else:
        raise TypeError(f"lrfused: {name} must be a number, got {type(value).__name__}")
    if not 0.0 <= number < math.inf:  # also rejects NaN
        raise ValueError(f"{message}: {value}")


def _check_torch_keywords(foreach, fused, differentiable) -> None:
    """torch's implementation switches. lrfused is always one fused, capturable pass, so foreach, fused and
    capturable choose nothing; they are accepted (with torch's checks) so that scripts keep working."""
    if differentiable:
        raise NotImplementedError(
            "lrfused: differentiable=True is not supported: the fused kernels update parameters in place outside "
            "autograd, so the step cannot be differentiated through; use torch.optim with differentiable=True")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


def _real_dtype(t: torch.Tensor) -> torch.dtype:
    return t.real.dtype if t.is_complex() else t.dtype


def _is_dtensor(t) -> bool:
    return type(t).__name__ == "DTensor" and hasattr(t, "_local_tensor")


def _local(t):
    """The tensor the kernels update: a DTensor's local shard (FSDP2), else the tensor itself."""
    return t._local_tensor if _is_dtensor(t) else t


def _byte_span(t: torch.Tensor):
    """(storage key, first byte, one past the last byte) of the memory t's elements occupy, or None."""
    t = _local(t)
    if t.numel() == 0 or t.device.type == "meta":
        return None
    base = t.untyped_storage().data_ptr()
    if base == 0:
        return None
    extent = 1 + sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
    first = t.storage_offset() * t.element_size()
    return (t.device, base), first, first + extent * t.element_size()


def _share_elements(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors whose byte spans in one storage intersect store an element at the same address
    (interleaved views such as buf[:, :3] and buf[:, 3:] do not): the element offsets of each, compared.
    Different element sizes count as sharing."""
    a, b = _local(a), _local(b)
    if a.element_size() != b.element_size():
        return True
    lo = min(a.storage_offset(), b.storage_offset())
    hi = max(_byte_span(t)[2] // t.element_size() for t in (a, b))
    offsets = torch.arange(hi - lo)
    ia, ib = (offsets.as_strided(t.shape, t.stride(), t.storage_offset() - lo).flatten() for t in (a, b))
    return bool(torch.isin(ia, ib).any())


def _check_no_shared_memory(params) -> None:
    """Refuses parameters whose memory overlaps: the fused step updates parameters in parallel (and a
    staged copy of one would be written back over the other's update), where torch's for-loop updates them
    one after the other. Parameters that are disjoint views of one buffer are fine."""
    spans: dict = {}
    for i, p in enumerate(params):
        span = _byte_span(p)
        if span is not None:
            spans.setdefault(span[0], []).append((span[1], span[2], i))
    for same_storage in spans.values():
        if len(same_storage) < 2:
            continue
        same_storage.sort()
        reach, owner = same_storage[0][1], same_storage[0][2]
        for first, end, i in same_storage[1:]:
            if first < reach and _share_elements(params[owner], params[i]):
                a, b = params[owner], params[i]
                raise ValueError(
                    f"lrfused: two parameters share memory (shapes {tuple(a.shape)} and {tuple(b.shape)}, one "
                    f"a view of the other or both views of one buffer with overlapping elements); a fused step "
                    f"updates parameters in parallel, so it cannot reproduce torch's one-after-the-other "
                    f"updates of shared elements. Optimize the base tensor only, or give each its own memory.")
            if end > reach:
                reach, owner = end, i


def _use_op_path() -> bool:
    """True while torch.compile traces step(): the step then goes through the registered ops, with every
    tensor an explicit argument (tests force it to run that path eagerly)."""
    return torch.compiler.is_compiling()


class _FusedOptimizer(torch.optim.Optimizer):
    """The machinery shared by lrfused's optimizers. Subclasses define _KIND, _validate_group,
    _state_keys, _flags and _hyper."""

    _KIND = -1
    # torch.amp.GradScaler hands grad_scale/found_inf to step() (as attributes) instead of unscaling
    # the gradients itself, as for torch's fused optimizers.
    _step_supports_amp_scaling = True

    def __init__(self, params, defaults: dict, schedule, state_dtype, max_grad_norm):
        if schedule is None:
            schedule = _schedules.Constant()
        if not isinstance(schedule, _schedules.Schedule):
            raise TypeError(f"lrfused: schedule must be a lrfused.schedules.Schedule, got {type(schedule).__name__}")
        if state_dtype is not None and state_dtype not in _STATE_DTYPES:
            raise TypeError(f"lrfused: state_dtype must be one of {sorted(map(str, _STATE_DTYPES))} or None, "
                            f"got {state_dtype}")
        if max_grad_norm is not None:
            if isinstance(max_grad_norm, bool) or not _is_number(max_grad_norm):
                raise TypeError(f"lrfused: max_grad_norm must be a positive number or None, got {max_grad_norm!r}")
            if not 0.0 < max_grad_norm < math.inf:
                raise ValueError(f"lrfused: max_grad_norm must be a positive finite number, got {max_grad_norm}")
        defaults = dict(defaults, schedule=schedule)
        self._state_dtype = state_dtype
        self._max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        # [total grad norm, clip factor] on the parameters' device: float64 on the CPU (exact for fp64
        # parameters), float32 elsewhere (what the CUDA kernels read).
        self._clip_buffer = None
        self._plan = None
        self._plan_signature = None
        self._sched_states: dict[torch.device, torch.Tensor] = {}
        # (group index, number of groups, device) -> (schedule, its program on that device): packed and
        # copied once, since a host-to-device copy per step would synchronise and break graph capture.
        self._programs: dict[tuple, tuple] = {}
        self._host_steps = 0  # step() calls; an upper bound of the device's k (skipped steps do not count there)
        self._shown = {}  # group index -> the object lrfused last put in group["lr"]
        self._lr_views = None  # (group, next-lr view, next-momentum view) per shown group, built lazily
        super().__init__(params, defaults)

    # ---- groups -------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        schedule = param_group.get("schedule", self.defaults.get("schedule"))
        if not isinstance(schedule, _schedules.Schedule):
            raise TypeError(f"lrfused: a param group's schedule must be a lrfused.schedules.Schedule, "
                            f"got {type(schedule).__name__}")
        candidate = dict(self.defaults)
        candidate.update(param_group)
        self._validate_group(candidate)
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
            if _real_dtype(p) not in _STATE_DTYPES:
                raise TypeError(f"lrfused: unsupported parameter dtype {p.dtype}")
            wanted = self._state_dtype
            if wanted is not None and not p.is_complex() and wanted != p.dtype and (p.dtype, wanted) not in _MIXED_STATE:
                raise ValueError(f"lrfused: state_dtype={wanted} is not supported for {p.dtype} parameters; "
                                 f"supported: the parameter's dtype, float32 state for bfloat16/float16 "
                                 f"parameters, bfloat16 state for float32 parameters")
            devices.add(p.device)
        if len(devices) > 1:
            raise ValueError(f"lrfused: all parameters of a param group must be on one device, got {sorted(map(str, devices))}")
        existing = [q for group in getattr(self, "param_groups", []) for q in group["params"]]
        _check_no_shared_memory(existing + params)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if self._scheduled(group):  # torch's convention: initial_lr is the base, lr what the next step applies
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = float(group["schedule"].lr_at(0, self._value(group["initial_lr"])))
            self._shown[len(self.param_groups) - 1] = group["lr"]
        if group["schedule"].cycles_momentum:  # as torch's CyclicLR / OneCycleLR set it when built
            self._set_momentum(group, float(self._momentum_at(group, 0)))
        # Known once per parameter set, not scanned per step.
        self._has_dtensor = getattr(self, "_has_dtensor", False) or any(_is_dtensor(p) for p in params)
        self._invalidate()

    def _invalidate(self) -> None:
        self._plan = None

    # ---- state ---------------------------------------------------------------------------------
    def _state_dtype_for(self, p: torch.Tensor) -> torch.dtype:
        if self._state_dtype is None or p.is_complex():
            return p.dtype
        return self._state_dtype

    def _init_state(self, p: torch.Tensor, group: dict) -> None:
        state = self.state[p]
        dtype = self._state_dtype_for(p)
        if "step" not in state:
            # SGD's buffer may come from a torch checkpoint, which keeps no step: a buffer means "not first".
            started = self._KIND == _SGD and state.get("momentum_buffer") is not None
            state["step"] = torch.tensor(1.0 if started else 0.0, dtype=torch.float32, device=p.device)
        for key in self._state_keys(group):
            if state.get(key) is None:
                state[key] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)

    def _state_keys(self, group) -> tuple:
        raise NotImplementedError

    # ---- the launch plan -----------------------------------------------------------------------
    def _signature(self):
        """What the launch plan is built from. Hyperparameters are not part of it: they are handed to the
        plan at every step, so a torch scheduler or a user writing group["lr"] costs no rebuild."""
        return tuple((self._flags(g), self._state_keys(g), id(g["schedule"]), len(g["params"]))
                     for g in self.param_groups)

    def _hypers(self) -> list:
        return [list(self._hyper(g)) for g in self.param_groups]

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

    def _sched_state(self, device: torch.device) -> torch.Tensor:
        num_groups = len(self.param_groups)
        old = self._sched_states.get(device)
        if old is not None and old.numel() == _sched_size(num_groups):
            return old
        values = torch.zeros(_sched_size(num_groups), dtype=torch.float64)  # built on the host, copied once
        plateau = self._plateau_schedule()
        worse = -math.inf if (plateau is not None and plateau.mode == "max") else math.inf
        values[_PLATEAU_BEST] = worse
        for g, group in enumerate(self.param_groups):
            base_lr = self._base_lr(group)
            values[_LAST_LR + g] = values[_next_lr_slot(num_groups, g)] = group["schedule"].lr_at(0, base_lr)
            values[_plateau_lr_slot(num_groups, g)] = base_lr
            values[_next_momentum_slot(num_groups, g)] = self._momentum_at(group, 0)
        if old is not None:  # groups were added: keep the counters and what the old groups had
            old = old.cpu()
            n = (old.numel() - _LAST_LR) // _SLOTS_PER_GROUP
            values[:_LAST_LR] = old[:_LAST_LR]
            for region in range(_SLOTS_PER_GROUP):
                values[_LAST_LR + region * num_groups:_LAST_LR + region * num_groups + n] = \
                    old[_LAST_LR + region * n:_LAST_LR + (region + 1) * n]
        state = values.to(device)
        self._sched_states[device] = state
        self._lr_views = None
        return state

    # ---- what param_groups show: torch's scheduler convention -------------------------------------
    def _momentum_at(self, group, k: int) -> float:
        fallback = self._hyper(group)[1]
        return group["schedule"].momentum_at(k, fallback) if group["schedule"].cycles_momentum else fallback

    @staticmethod
    def _scheduled(group) -> bool:
        return not isinstance(group.get("schedule"), _schedules.Constant)

    def _base_lr(self, group) -> float:
        """The schedule's base lr: ``initial_lr`` for a scheduled group, else ``lr`` (which is then simply the
        lr, as in torch without a scheduler, and may be written by a torch scheduler)."""
        return self._value(group["initial_lr"] if self._scheduled(group) and "initial_lr" in group else group["lr"])

    def _absorb_lr_writes(self):
        """A user's write to a scheduled group's ``lr`` between steps rescales its schedule: the base becomes
        base * written / shown, so the next step applies the written lr and the schedule goes on from there
        (what torch's chainable schedulers do with such a write). For ReduceLROnPlateau the written lr becomes
        the plateau's current lr, as torch's ReduceLROnPlateau reads it. A write to ``initial_lr`` sets the
        base directly. Returns a function that undoes what this did (for a step that is then refused)."""
        undo = []
        num_groups = len(self.param_groups)
        for g, group in enumerate(self.param_groups):
            shown = self._shown.get(g)
            if shown is None or group["lr"] is shown or not self._scheduled(group):
                continue
            written, before = self._value(group["lr"]), self._value(shown)
            if group["schedule"].is_plateau:
                for state in self._sched_states.values():
                    slot = _plateau_lr_slot(num_groups, g)
                    undo.append(lambda state=state, slot=slot, v=state[slot].clone(): state.__setitem__(slot, v))
                    state[slot] = written
            else:
                undo.append(lambda group=group, v=group["initial_lr"]: group.__setitem__("initial_lr", v))
                base = self._value(group["initial_lr"])
                group["initial_lr"] = written if before == 0 else base * (written / before)
            undo.append(lambda g=g, v=shown: self._shown.__setitem__(g, v))
            self._shown[g] = group["lr"]

        def run():
            for action in reversed(undo):
                action()
        return run

    def _publish_lrs(self) -> None:
        """Puts in each scheduled group's ``lr`` what torch shows after ``opt.step(); sched.step()``: the lr
        the next step applies. A Python float for CPU parameters; for GPU parameters a 0-dim float64 tensor
        that the kernels keep current (a view into the schedule state: no synchronisation; reading it as a
        number synchronises)."""
        views = self._lr_views
        if views is None:
            views = self._lr_views = self._make_lr_views()
        for g, view, momentum in views:
            group = self.param_groups[g]
            if view is not None:
                value = float(view) if view.device.type == "cpu" else view
                group["lr"] = value
                self._shown[g] = value
            if momentum is not None:
                self._set_momentum(group, float(momentum) if momentum.device.type == "cpu" else momentum)

    def _set_momentum(self, group, value) -> None:
        """What torch's CyclicLR / OneCycleLR leave in a group: SGD's momentum or Adam's betas[0]."""
        raise NotImplementedError

    def _make_lr_views(self):
        num_groups = len(self.param_groups)
        views = []
        for g, group in enumerate(self.param_groups):
            cycles = group["schedule"].cycles_momentum
            if not (self._scheduled(group) or cycles) or not group["params"]:
                continue
            state = self._sched_states.get(_local(group["params"][0]).device)
            if state is None or state.numel() != _sched_size(num_groups):
                continue
            slot = _plateau_lr_slot(num_groups, g) if group["schedule"].is_plateau else _next_lr_slot(num_groups, g)
            views.append((g, state[slot] if self._scheduled(group) else None,
                          state[_next_momentum_slot(num_groups, g)] if cycles else None))
        return views

    def _plateau_schedule(self):
        plateaus = [g["schedule"] for g in self.param_groups if g["schedule"].is_plateau]
        if not plateaus:
            return None
        if any(s is not plateaus[0] and s != plateaus[0] for s in plateaus[1:]):
            raise ValueError("lrfused: param groups use different ReduceLROnPlateau schedules; one optimizer "
                             "drives one plateau state machine, so give every group the same one")
        return plateaus[0]

    def _buckets(self):
        """Yields (group_index, group, params) per (group, device, dtype), params that have state."""
        for g, group in enumerate(self.param_groups):
            by_key: dict[tuple, list] = {}
            for p in group["params"]:
                if "step" in self.state.get(p, {}):
                    by_key.setdefault((p.device, p.dtype), []).append(p)
            for params in by_key.values():
                yield g, group, params

    def _bucket_args(self, g, group, params, device):
        keys = self._state_keys(group)
        lists = [[self.state[p][k] for p in params] for k in keys]
        lists += [[] for _ in range(3 - len(lists))]
        steps = [self.state[p]["step"] for p in params]
        return lists, steps, self._sched_state(device), self._device_program(g, group, device)

    def _device_program(self, g: int, group: dict, device: torch.device) -> torch.Tensor:
        schedule = group["schedule"]
        key = (g, len(self.param_groups), device)
        cached = self._programs.get(key)
        if cached is None or cached[0] is not schedule:
            cached = (schedule, schedule._pack(g, len(self.param_groups)).to(device))
            self._programs[key] = cached
        return cached[1]

    def _check_params_against_state(self) -> None:
        """Before any state is created or any kernel runs: every new gradient is one the kernels take, every
        parameter still matches the state created for it, and no two parameters share memory. A parameter
        moved to another dtype or device, or given another shape, after its state was created is refused
        here, as torch.optim refuses it (its update mixes the two); a new memory format is followed."""
        params = [p for group in self.param_groups for p in group["params"]]
        _check_no_shared_memory(params)
        for g, group in enumerate(self.param_groups):
            keys = self._state_keys(group)
            for i, p in enumerate(group["params"]):
                local = _local(p)
                if p.grad is not None:
                    _C.check_grad(local, _local(p.grad))
                state = self.state.get(p, {})
                if "step" not in state:
                    continue
                dtype = self._state_dtype_for(p)
                step = state["step"]
                if isinstance(step, torch.Tensor) and _local(step).device != local.device:
                    raise RuntimeError(
                        f"lrfused: parameter {i} of param group {g} is now on {local.device}, but its optimizer "
                        f"state was created on {_local(step).device} (a model.to() after the first step?). "
                        f"torch.optim refuses this too: move the model before creating the optimizer, or create "
                        f"a new one.")
                for key in keys:
                    s = state.get(key)
                    if s is None:
                        continue
                    s = _local(s)
                    supported = (s.dtype == _real_dtype(local) or p.is_complex()
                                 or (local.dtype, s.dtype) in _MIXED_STATE)
                    if (s.shape != local.shape or s.device != local.device or s.dtype != dtype
                            or not supported):
                        raise RuntimeError(
                            f"lrfused: parameter {i} of param group {g} is now {local.dtype}, shape "
                            f"{tuple(local.shape)}, on {local.device}, but its optimizer state '{key}' was created "
                            f"for {s.dtype}, shape {tuple(s.shape)}, on {s.device} (a model.half() / .to() or a "
                            f".data swap after the first step?). torch.optim refuses this too: move or cast the "
                            f"model before creating the optimizer, or create a new one.")

    def _build_plan(self) -> None:
        self._check_params_against_state()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._init_state(p, group)
        self._plateau_schedule()  # raises for conflicting plateau schedules
        plan = _C.Plan()
        # Every device's counter advances on every step, also one where no parameter has a gradient
        # (torch's scheduler counts those steps too).
        for device in {p.device for group in self.param_groups for p in group["params"]}:
            plan.add_sched_state(self._sched_state(device))
        for g, group, params in self._buckets():
            (s1, s2, s3), steps, sched_state, program = self._bucket_args(g, group, params, params[0].device)
            plan.add_bucket(params, s1, s2, s3, steps, sched_state, program, g, self._KIND, self._flags(group),
                            list(self._hyper(group)))
        self._stateless = [p for group in self.param_groups for p in group["params"]
                           if "step" not in self.state.get(p, {})]
        self._plan = plan
        self._plan_signature = self._signature()

    # ---- stepping ------------------------------------------------------------------------------
    def _check_schedule_bounds(self) -> None:
        k = self._host_steps
        cpu_state = self._sched_states.get(torch.device("cpu"))
        if cpu_state is not None:
            k = int(cpu_state[_SCHED_STEP])  # exact and free on the CPU
        for group in self.param_groups:
            last = group["schedule"].max_step()
            if last is not None and k > last:
                raise ValueError(f"lrfused: step {k} is past the end of the schedule {group['schedule']!r}, "
                                 f"which allows steps 0..{last} (torch's scheduler raises here too)")

    @torch.no_grad()
    def step(self, closure=None, *, grad_scale: torch.Tensor | None = None, found_inf: torch.Tensor | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if _use_op_path():
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

    def _fused_step(self, grad_scale, found_inf) -> None:
        if self._has_dtensor:
            self._op_step(grad_scale, found_inf)
            return
        if self._plan is None or self._plan_signature != self._signature():
            self._check_not_capturing("the optimizer's parameters, groups or hyperparameters changed")
            self._build_plan()
        clip = self._max_grad_norm or 0.0
        buffer = self._clip_buffer_for_step()
        hypers = self._hypers()
        if not self._plan.step(grad_scale, found_inf, clip, buffer, self._stateless, hypers):
            # A parameter got its first gradient (give it state) or changed since the plan was built.
            self._check_not_capturing("a parameter got its first gradient or changed")
            self._build_plan()
            if not self._plan.step(grad_scale, found_inf, clip, buffer, self._stateless, hypers):
                raise RuntimeError("lrfused: internal error: the launch plan is out of date right after it was "
                                   "rebuilt; nothing was changed by this step")

    @staticmethod
    def _check_not_capturing(why: str) -> None:
        """Building the launch plan creates state and copies to the device, which a CUDA graph capture
        cannot hold: refuse, with nothing changed yet, and say how to avoid it."""
        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            raise RuntimeError(
                f"lrfused: {why}, so the launch plan must be rebuilt, which cannot happen during CUDA graph "
                "capture. Warm up before capturing: run a few eager steps with every parameter that will "
                "have a gradient, and change no parameter, group or hyperparameter inside the captured region.")

    def _clip_buffer_for_step(self):
        if self._max_grad_norm is None:
            return None
        if self._clip_buffer is None:
            device = next((_local(p).device for g in self.param_groups for p in g["params"]), torch.device("cpu"))
            dtype = torch.float64 if device.type == "cpu" else torch.float32
            self._clip_buffer = torch.zeros(2, dtype=dtype, device=device)
        return self._clip_buffer

    @property
    def grad_norm(self) -> torch.Tensor | None:
        """With max_grad_norm: the global L2 norm of the (unscaled) gradients of the latest step, before
        clipping, as a 0-dim tensor on the parameters' device (reading it as a number may sync)."""
        return None if self._clip_buffer is None else self._clip_buffer[0]

    def _op_clip_factor(self, grad_scale):
        """Fused clipping on the op path: one sum-of-squares pass per bucket, the factor stays on device."""
        buffer = self._clip_buffer_for_step()
        if buffer is None:
            return None
        parts = []
        for _g, _group, params in self._buckets():
            grads = [_local(p.grad) for p in params if p.grad is not None]
            if grads:
                scale = None if grad_scale is None else grad_scale.to(grads[0].device)
                parts.append(ops.grad_sq_norm(grads, scale).to(buffer.device))
        norm = torch.stack(parts).sum().sqrt() if parts else torch.zeros((), device=buffer.device)
        buffer[0] = norm
        buffer[1] = (self._max_grad_norm / (norm + 1e-6)).clamp(max=1.0)
        return buffer[1:2]


    def _op_step(self, grad_scale, found_inf) -> None:
        """The registered ops with every tensor an explicit argument: what torch.compile traces, and the
        path of DTensor (FSDP2) parameters, whose local shards are updated."""
        for device in {p.device for group in self.param_groups for p in group["params"]}:
            self._sched_state(device)
        if not torch.compiler.is_compiling():  # traced: the ops check what they are given
            self._check_params_against_state()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and "step" not in self.state.get(p, {}):
                    self._init_state(p, group)
        grad_factor = self._op_clip_factor(grad_scale)
        for g, group, params in self._buckets():
            # Also a bucket without gradients this step: the op records the applied lr all the same.
            with_grad = [p for p in params if p.grad is not None]
            device = params[0].device
            (s1, s2, s3), steps, sched_state, program = self._bucket_args(g, group, with_grad, device)
            s1, s2, s3 = ([_local(t) for t in lst] for lst in (s1, s2, s3))
            ops.fused_step_([_local(p) for p in with_grad], [_local(p.grad) for p in with_grad], s1, s2, s3,
                            steps, sched_state, program, g,
                            self._KIND, self._flags(group), list(self._hyper(group)),
                            None if grad_scale is None else grad_scale.to(device),
                            None if found_inf is None else found_inf.to(device),
                            None if grad_factor is None else grad_factor.to(device))
        for device, state in self._sched_states.items():
            ops.advance_(state, None if found_inf is None else found_inf.to(device))

    # ---- schedule queries ----------------------------------------------------------------------
    @property
    def scheduler(self):
        """An LRScheduler-compatible handle (step() is a no-op: the schedule advances inside
        optimizer.step()), for trainers that want an (optimizer, scheduler) pair."""
        from .scheduler_handle import LRSchedulerHandle

        handle = self.__dict__.get("_scheduler_handle")
        if handle is None:
            handle = self.__dict__["_scheduler_handle"] = LRSchedulerHandle(self)
        return handle

    def get_last_lr(self) -> list[float]:
        """The lr applied by the most recent step(), per group (reads device memory: for logging)."""
        lrs = []
        for g, group in enumerate(self.param_groups):
            device = group["params"][0].device if group["params"] else None
            state = self._sched_states.get(device)
            if state is None or state.numel() != _sched_size(len(self.param_groups)):
                lrs.append(float(group["schedule"].lr_at(0, self._base_lr(group))))
            else:
                lrs.append(float(state[_LAST_LR + g]))
        return lrs

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
        config = plateau.plateau_config(len(self.param_groups))
        for device in devices:
            self._sched_state(device)
        self._absorb_lr_writes()  # a write before the report is the lr the plateau reduces from, as in torch
        for device in devices:
            state = self._sched_state(device)
            value = metric if isinstance(metric, torch.Tensor) else torch.tensor(float(metric), dtype=torch.float64)
            ops.plateau_report_(state, value.to(device=device, dtype=torch.float64).reshape(()), config,
                                len(self.param_groups))
        self._publish_lrs()

    # ---- pickling ------------------------------------------------------------------------------
    _EXTRA_ATTRS = ("_state_dtype", "_max_grad_norm", "_clip_buffer", "_sched_states", "_host_steps",
                    "_has_dtensor")

    def __getstate__(self):
        state = super().__getstate__()  # defaults, state, param_groups
        state.update({name: self.__dict__[name] for name in self._EXTRA_ATTRS if name in self.__dict__})
        return state  # the C++ plan is not picklable: rebuilt on the next step

    def __setstate__(self, state):
        super().__setstate__(state)
        self._plan = None
        self._plan_signature = None
        self._programs = {}
        self._tensor_values = {}
        self._lr_views = None
        self._shown = {g: group["lr"] for g, group in enumerate(self.param_groups)}

    # ---- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        sd = super().state_dict()
        views = [t for entry in (self._lr_views or ()) for t in entry[1:] if t is not None]
        ours = lambda x: isinstance(x, torch.Tensor) and any(x is v for v in views)  # noqa: E731
        for group in sd["param_groups"]:  # a GPU group shows device views: checkpoints hold the numbers
            for key in ("lr", "momentum"):
                if ours(group.get(key)):
                    group[key] = float(group[key])
            if "betas" in group and ours(group["betas"][0]):
                group["betas"] = (float(group["betas"][0]), group["betas"][1])
        sd["lrfused"] = {"sched_state": {str(d): s.detach().cpu().clone() for d, s in self._sched_states.items()},
                         "host_steps": self._host_steps}
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("lrfused", None)
        saved_groups = state_dict.get("param_groups", [])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"lrfused: loaded state dict has {len(saved_groups)} param groups, this optimizer has "
                             f"{len(self.param_groups)}")
        schedules = [g["schedule"] for g in self.param_groups]
        self._check_loaded_state(state_dict)
        super().load_state_dict(state_dict)
        for group, schedule in zip(self.param_groups, schedules):
            group.setdefault("schedule", schedule)
            for key, value in self.defaults.items():  # keys older checkpoints (or torch's) do not carry
                group.setdefault(key, value)
            self._validate_group(group)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    self._adopt_loaded_state(p, group, state)
        self._sched_states = {}
        self._programs = {}
        self._lr_views = None
        for g, group in enumerate(self.param_groups):
            # lrfused's and torch's (with a scheduler) checkpoints keep the base in initial_lr and the lr of
            # the next step in lr; without one, lr is the base.
            if self._scheduled(group):
                group.setdefault("initial_lr", group["lr"])
            self._shown[g] = group["lr"]
        if extra is not None:
            self._host_steps = int(extra.get("host_steps", 0))
            self._sched_states = self._map_saved_sched_states(extra.get("sched_state", {}))
        else:  # a torch optimizer's checkpoint: the schedule position is the parameters' step count
            self._host_steps = int(max((float(st["step"]) for st in self.state.values() if "step" in st), default=0))
            for device in {p.device for g in self.param_groups for p in g["params"]}:
                self._sched_state(device)[_SCHED_STEP] = self._host_steps
        self._invalidate()

    def _map_saved_sched_states(self, saved: dict) -> dict:
        """The schedule position saved under each device's name, put on the devices that hold the
        parameters now: by name where the device is the same, else the most advanced saved state (every
        device's counter advances on every step, so they agree). A cuda:0 checkpoint resumes on cuda:1 or on
        a CPU-only host at the step it was saved at."""
        saved = {str(name): s for name, s in saved.items()}
        if not saved:
            return {}
        num_groups = len(self.param_groups)
        for name, s in saved.items():  # checkpoints from before the next-lr/momentum slots: add them
            if s.numel() == _LAST_LR + 2 * num_groups:
                momenta = torch.tensor([self._momentum_at(g, 0) for g in self.param_groups], dtype=s.dtype)
                saved[name] = torch.cat([s, s[_LAST_LR:_LAST_LR + num_groups], momenta])
        most_advanced = max(saved.values(), key=lambda s: float(s[_SCHED_STEP]))
        devices = {p.device for g in self.param_groups for p in g["params"]}
        return {device: saved.get(str(device), most_advanced).to(device=device, dtype=torch.float64).clone()
                for device in devices}

    def _check_loaded_state(self, state_dict: dict) -> None:
        if "state" not in state_dict or "param_groups" not in state_dict:
            raise ValueError("lrfused: a state dict needs 'state' and 'param_groups' keys")
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        if len(ids) != len(params):
            raise ValueError(f"lrfused: loaded state dict has {len(ids)} parameters, this optimizer has {len(params)}")
        required = set(self._GROUP_KEYS)
        for i, saved in enumerate(state_dict["param_groups"]):
            missing = sorted(required - set(saved))
            if missing:
                raise ValueError(f"lrfused: loaded param group {i} misses {missing}: a state dict from a different "
                                 f"optimizer than {type(self).__name__}?")
            self._check_loaded_group_meaning(i, saved)
        allowed = set(self._allowed_state_keys())
        by_id = dict(zip(ids, params))
        for pid, st in state_dict["state"].items():
            foreign = sorted(k for k in st if k not in allowed)
            if foreign:
                raise ValueError(f"lrfused: loaded state of parameter {pid} has keys {foreign} that "
                                 f"{type(self).__name__} does not use: a state dict from a different optimizer?")
            p = by_id.get(pid)
            if p is None:
                continue
            for key, value in st.items():
                if isinstance(value, torch.Tensor) and key != "step" and value.shape != p.shape:
                    raise ValueError(f"lrfused: loaded state '{key}' has shape {tuple(value.shape)}, its parameter "
                                     f"has shape {tuple(p.shape)}")
            expected = set(self._required_loaded_keys(self._group_of(state_dict, pid)))
            missing = expected - set(k for k, v in st.items() if v is not None)
            if missing:
                raise ValueError(f"lrfused: loaded state of parameter {pid} misses {sorted(missing)} "
                                 f"(a state dict from a different optimizer?)")

    def _check_loaded_group_meaning(self, i: int, saved: dict) -> None:
        """Refuses a group whose hyperparameters mean another optimizer than this class (overridden)."""

    @staticmethod
    def _group_of(state_dict, pid):
        for g in state_dict["param_groups"]:
            if pid in g["params"]:
                return g
        return {}

    def _required_loaded_keys(self, saved_group) -> tuple:
        return ()

    def _allowed_state_keys(self) -> tuple:
        raise NotImplementedError

    def _adopt_loaded_state(self, p, group, state) -> None:
        """Brings a loaded per-parameter state into lrfused's layout: step as a float32 tensor on the
        parameter's device, buffers in the state dtype."""
        if "step" in state:
            state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(p.device).reshape(())
        dtype = self._state_dtype_for(p)
        for key in self._state_keys(group):
            if state.get(key) is not None:
                state[key] = state[key].to(device=p.device, dtype=dtype)
        self._init_state(p, group)


class SGD(_FusedOptimizer):
    """torch.optim.SGD's math with the learning-rate schedule fused into the update."""

    _KIND = _SGD
    _GROUP_KEYS = ("lr", "momentum", "dampening", "weight_decay", "nesterov")  # what a loaded group must have

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float | torch.Tensor = 0.0, nesterov: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, differentiable: bool = False, fused: bool | None = None,
                 schedule=None, state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None):
        _check_torch_keywords(foreach, fused, differentiable)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize, foreach=foreach, differentiable=differentiable,
                        fused=fused)
        self._validate_group(defaults)
        super().__init__(params, defaults, schedule, state_dtype, max_grad_norm)

    @staticmethod
    def _validate_group(group: dict) -> None:
        _check_nonnegative(group["lr"], "lr", "Invalid learning rate")
        _check_nonnegative(group["momentum"], "momentum", "Invalid momentum value", tensor_ok=False)
        _check_nonnegative(group["dampening"], "dampening", "Invalid dampening value", tensor_ok=False)
        _check_nonnegative(group["weight_decay"], "weight_decay", "Invalid weight_decay value")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_keys(self, group) -> tuple:
        # A schedule that cycles momentum sets it at every step (as torch's CyclicLR/OneCycleLR overwrite
        # group["momentum"]), so the buffer exists even when the constructor's momentum is 0.
        momentum = group["schedule"].cycles_momentum or group["momentum"] != 0
        return ("momentum_buffer",) if momentum else ()

    def _set_momentum(self, group, value) -> None:
        group["momentum"] = value

    def _allowed_state_keys(self) -> tuple:
        return ("momentum_buffer", "step")

    def _flags(self, group) -> int:
        return (_FLAG_NESTEROV if group["nesterov"] else 0) | (_FLAG_MAXIMIZE if group["maximize"] else 0)

    def _hyper(self, group) -> tuple:
        v = self._value
        return (self._lr_hyper(group), v(group["momentum"]), float(group["dampening"]), 0.0,
                v(group["weight_decay"]))


class Adam(_FusedOptimizer):
    """torch.optim.Adam's math (L2 weight decay added to the gradient) with the schedule fused in."""

    _KIND = _ADAM
    _DECOUPLED = False
    _GROUP_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad")  # what a loaded group must have

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *, foreach: bool | None = None,
                 maximize: bool = False, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, decoupled_weight_decay: bool = False, schedule=None,
                 state_dtype: torch.dtype | None = None, max_grad_norm: float | None = None):
        _check_torch_keywords(foreach, fused, differentiable)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                        foreach=foreach, capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=bool(decoupled_weight_decay))
        self._validate_group(defaults)
        super().__init__(params, defaults, schedule, state_dtype, max_grad_norm)

    @staticmethod
    def _validate_group(group: dict) -> None:
        _check_nonnegative(group["lr"], "lr", "Invalid learning rate")
        _check_nonnegative(group["eps"], "eps", "Invalid epsilon value", tensor_ok=False)
        _check_nonnegative(group["weight_decay"], "weight_decay", "Invalid weight_decay value", tensor_ok=False)
        betas = group["betas"]
        if isinstance(betas, torch.Tensor) or not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"lrfused: betas must be a pair of numbers or of one-element tensors, got {betas!r}")
        if sum(isinstance(b, torch.Tensor) for b in betas) == 1:
            raise ValueError("betas must be either both floats or both Tensors")
        for i, beta in enumerate(betas):
            if isinstance(beta, torch.Tensor):
                if not _is_scalar_tensor(beta):
                    raise ValueError(f"Tensor betas[{i}] must be 1-element")
                beta = float(beta)
            elif not _is_number(beta):
                raise TypeError(f"lrfused: betas[{i}] must be a number, got {type(beta).__name__}")
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")

    def _state_keys(self, group) -> tuple:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _allowed_state_keys(self) -> tuple:
        return ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _set_momentum(self, group, value) -> None:
        group["betas"] = (value, group["betas"][1])

    def _required_loaded_keys(self, saved_group) -> tuple:
        keys = ("step", "exp_avg", "exp_avg_sq")
        return keys + ("max_exp_avg_sq",) if saved_group.get("amsgrad") else keys

    def _flags(self, group) -> int:
        decoupled = group.get("decoupled_weight_decay", self._DECOUPLED)
        return ((_FLAG_AMSGRAD if group["amsgrad"] else 0) | (_FLAG_MAXIMIZE if group["maximize"] else 0)
                | (_FLAG_DECOUPLED_WD if decoupled else 0))

    def _hyper(self, group) -> tuple:
        v = self._value
        beta1, beta2 = group["betas"]
        return (self._lr_hyper(group), v(beta1), v(beta2), float(group["eps"]), float(group["weight_decay"]))


class AdamW(Adam):
    """torch.optim.AdamW's math (decoupled weight decay with the scheduled lr: p *= 1 - lr_k * wd)."""

    _DECOUPLED = True

    def __init__(self, params, lr: float | torch.Tensor = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, *, maximize: bool = False,
                 foreach: bool | None = None, capturable: bool = False, differentiable: bool = False,
                 fused: bool | None = None, schedule=None, state_dtype: torch.dtype | None = None,
                 max_grad_norm: float | None = None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                         foreach=foreach, maximize=maximize, capturable=capturable, differentiable=differentiable,
                         fused=fused, decoupled_weight_decay=True, schedule=schedule, state_dtype=state_dtype,
                         max_grad_norm=max_grad_norm)

    def _check_loaded_group_meaning(self, i: int, saved: dict) -> None:
        if saved.get("decoupled_weight_decay", True) is False:
            raise ValueError(
                f"lrfused: loaded param group {i} has decoupled_weight_decay=False: a torch.optim.Adam / lrfused.Adam "
                f"checkpoint (L2 weight decay), which AdamW would continue with another update; load it into "
                f"lrfused.Adam instead")
