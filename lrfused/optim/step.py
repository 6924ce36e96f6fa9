"""One step, described once: the (group, device, dtype) buckets both step paths walk, the eager launch plan
(a C++ object that holds each bucket's buffers and runs a step in one call) and the op path (the registered
per-family ops with every tensor an explicit argument: what torch.compile traces, and DTensor/FSDP2)."""
from __future__ import annotations

import contextlib

import torch

from .. import contract
from .._ops import _C, ops
from .checks import MASTER_KEY, _check_no_shared_memory, _local, _takes_master
from .quantized import absmax_key, check_absmax, quantizes

_FORCED_OP_PATH = [False]


@contextlib.contextmanager
def eager_op_path():
    """Runs ``step()`` through the registered ops eagerly (the path ``torch.compile`` traces, and DTensor
    parameters take) instead of the launch plan, with the same checks and bookkeeping around it: to debug
    or test that path without compiling. Both paths give the same bits."""
    _FORCED_OP_PATH.append(True)
    try:
        yield
    finally:
        _FORCED_OP_PATH.pop()


def _has_8bit_state(state: dict, keys: tuple) -> bool:
    """Whether a parameter's state (keys: its family's state keys) is stored in 8 bits (optim_bits=8)."""
    first = state.get(keys[0]) if keys else None
    return first is not None and first.dtype == torch.uint8


def _use_op_path() -> bool:
    """True while torch.compile traces step() (or inside ``eager_op_path()``)."""
    return _FORCED_OP_PATH[-1] or torch.compiler.is_compiling()


class StepMixin:
    """Needs the optimizer's ``_state_keys``, ``_flags``, ``_hyper_list``, ``_call_step_op`` (the family's),
    ``_sched_state`` and ``_init_state``."""

    def _buckets(self):
        """Yields (group_index, group, params, streams) per (group, device, dtype), params that have state;
        streams: each one's index among all the optimizer's parameters, which names its stream of
        stochastic-rounding bits (the same on both step paths and after a resume)."""
        first = 0
        for g, group in enumerate(self.param_groups):
            by_key: dict[tuple, tuple] = {}
            keys = self._state_keys(group)
            for i, p in enumerate(group["params"]):
                state = self.state.get(p, {})
                if "step" in state:
                    params, streams = by_key.setdefault((p.device, p.dtype, _has_8bit_state(state, keys)), ([], []))
                    params.append(p)
                    streams.append(first + i)
            first += len(group["params"])
            for params, streams in by_key.values():
                yield g, group, params, streams

    def _bucket_args(self, g, group, params, device):
        keys = self._state_keys(group)
        lists = [[self.state[p][k] for p in params] for k in keys]
        lists += [[] for _ in range(3 - len(lists))]
        steps = [self.state[p]["step"] for p in params]
        masters = [self.state[p][MASTER_KEY] for p in params] if group.get("master_weights") and params and \
            _takes_master(params[0]) else []
        # 8-bit state: the block scales of the first two lists (one bucket is all 8-bit or none)
        quantized = bool(params) and _has_8bit_state(self.state[params[0]], keys)
        absmax = [[self.state[p][absmax_key(k)] for p in params] if quantized and k in self._QUANTIZED_KEYS else []
                  for k in keys[:2]]
        absmax += [[] for _ in range(2 - len(absmax))]
        return lists, steps, masters, absmax, self._sched_state(device), self._device_program(g, group, device)

    def _rounding_args(self, group, streams) -> dict:
        """The op's stochastic-rounding arguments for a bucket of ``group``."""
        stochastic = bool(group.get("stochastic_rounding", False))
        return {"stochastic_rounding": stochastic, "sr_seed": self._sr_seed,
                "sr_streams": list(streams) if stochastic else []}

    def _device_program(self, g: int, group: dict, device: torch.device) -> torch.Tensor:
        hyper = group.get("hyper_schedules") or {}
        schedules = (group["schedule"], *hyper.keys(), *hyper.values())  # what the program is made of
        key = (g, len(self.param_groups), device)
        cached = self._programs.get(key)
        if cached is None or len(cached[0]) != len(schedules) or any(
                a is not b and a != b for a, b in zip(cached[0], schedules)):
            cached = (schedules, self._group_program(group, g, len(self.param_groups)).to(device))
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
                step = state["step"]
                if isinstance(step, torch.Tensor) and _local(step).device != local.device:
                    raise RuntimeError(
                        f"lrfused: parameter {i} of param group {g} is now on {local.device}, but its optimizer "
                        f"state was created on {_local(step).device} (a model.to() after the first step?). "
                        f"torch.optim refuses this too: move the model before creating the optimizer, or create "
                        f"a new one.")
                master = state.get(MASTER_KEY)
                if master is not None and (_local(master).shape != local.shape or _local(master).device != local.device
                                           or _local(master).dtype != torch.float32):
                    raise RuntimeError(
                        f"lrfused: parameter {i} of param group {g} is now {local.dtype}, shape "
                        f"{tuple(local.shape)}, on {local.device}, but its float32 master copy is shape "
                        f"{tuple(_local(master).shape)} on {_local(master).device}: move or cast the model before "
                        f"creating the optimizer, or create a new one.")
                for key in keys:
                    s = state.get(key)
                    if s is None:
                        continue
                    s = _local(s)
                    # the state dtype, or 8-bit codes where the parameter can have them (a change of
                    # optim_bits converts the state when the plan is built)
                    dtype = self._state_dtype_for(local)
                    if s.dtype == torch.uint8 and key in self._QUANTIZED_KEYS and \
                            quantizes(local, dict(group, optim_bits=8)):
                        dtype = torch.uint8
                        check_absmax(_local(state.get(absmax_key(key))), local, key, f"parameter {i} of param group {g}")
                    supported = p.is_complex() or (local.dtype, s.dtype) in contract.DTYPE_PAIRS
                    if (s.shape != local.shape or s.device != local.device or s.dtype != dtype
                            or not supported):
                        raise RuntimeError(
                            f"lrfused: parameter {i} of param group {g} is now {local.dtype}, shape "
                            f"{tuple(local.shape)}, on {local.device}, but its optimizer state '{key}' was created "
                            f"for {s.dtype}, shape {tuple(s.shape)}, on {s.device} (a model.half() / .to() or a "
                            f".data swap after the first step?). torch.optim refuses this too: move or cast the "
                            f"model before creating the optimizer, or create a new one.")

    def _build_plan(self) -> None:
        # A build that raises leaves no plan behind: the next step builds again (and raises again) instead
        # of stepping with a plan made for the state as it was.
        self._plan = self._plan_signature = None
        self._check_groups_now()
        self._check_params_against_state()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None or "step" in self.state.get(p, {}):  # also a master_weights change
                    self._init_state(p, group)
        self._plateau_schedule()  # raises for conflicting plateau schedules
        plan = _C.Plan()
        # Every device's counter advances on every step, also one where no parameter has a gradient
        # (torch's scheduler counts those steps too).
        for device in {p.device for group in self.param_groups for p in group["params"]}:
            plan.add_sched_state(self._sched_state(device))
        for g, group, params, streams in self._buckets():
            (s1, s2, s3), steps, masters, absmax, sched_state, program = self._bucket_args(g, group, params,
                                                                                           params[0].device)
            rounding = self._rounding_args(group, streams)
            plan.add_bucket(params, s1, s2, s3, steps, sched_state, program, g, self._KIND, self._flags(group),
                            self._hyper_list(group), masters, rounding["sr_streams"], rounding["sr_seed"], *absmax)
        self._stateless = [p for group in self.param_groups for p in group["params"]
                           if "step" not in self.state.get(p, {})]
        self._plan = plan
        self._plan_signature = self._signature()
        self.plan_builds += 1

    def _fused_step(self, grad_scale, found_inf) -> None:
        if self._has_dtensor or _use_op_path():
            self._op_step(grad_scale, found_inf)
            return
        if self._plan is None or self._plan_signature != self._signature():
            self._check_not_capturing("the optimizer's parameters, groups or hyperparameters changed")
            self._build_plan()
        clip = self._max_grad_norm or 0.0
        buffer = self._clip_buffer_for_step()
        hypers = [self._hyper_list(group) for group in self.param_groups]
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
        for _g, _group, params, _streams in self._buckets():
            grads = [_local(p.grad) for p in params if p.grad is not None]
            if grads:
                scale = None if grad_scale is None else grad_scale.to(grads[0].device)
                parts.append(ops.grad_sq_norm(grads, scale).to(buffer.device))
        norm = torch.stack(parts).sum().sqrt() if parts else torch.zeros((), device=buffer.device)
        buffer[0] = norm
        buffer[1] = (self._max_grad_norm / (norm + contract.CLIP_EPS)).clamp(max=1.0)
        return buffer[1:2]

    def _op_step(self, grad_scale, found_inf) -> None:
        """The registered ops with every tensor an explicit argument: what torch.compile traces, and the
        path of DTensor (FSDP2) parameters, whose local shards are updated."""
        if not torch.compiler.is_compiling():  # traced: the ops check what they are given
            self._check_groups_now()
            self._check_params_against_state()  # before anything (state, schedule state) is created
        for device in {p.device for group in self.param_groups for p in group["params"]}:
            self._sched_state(device)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None or "step" in self.state.get(p, {}):  # also a master_weights change
                    self._init_state(p, group)
        grad_factor = self._op_clip_factor(grad_scale)
        for g, group, params, streams in self._buckets():
            # Also a bucket without gradients this step: the op records the applied lr all the same.
            with_grad = [p for p in params if p.grad is not None]
            streams = [s for p, s in zip(params, streams) if p.grad is not None]
            device = params[0].device
            (s1, s2, s3), steps, masters, absmax, sched_state, program = self._bucket_args(g, group, with_grad, device)
            s1, s2, s3, masters = ([_local(t) for t in lst] for lst in (s1, s2, s3, masters))
            absmax_args = {name: [_local(t) for t in lst] for name, lst in zip(self._ABSMAX_ARGS, absmax)}
            on_device = (lambda t: None if t is None else t.to(device))  # noqa: E731
            self._call_step_op(group, [_local(p) for p in with_grad], [_local(p.grad) for p in with_grad],
                               (s1, s2, s3), steps, sched_state, program, g, grad_scale=on_device(grad_scale),
                               found_inf=on_device(found_inf), grad_factor=on_device(grad_factor),
                               master_params=masters, **absmax_args, **self._rounding_args(group, streams))
        for device, state in self._sched_states.items():
            ops.advance_(state, None if found_inf is None else found_inf.to(device))

