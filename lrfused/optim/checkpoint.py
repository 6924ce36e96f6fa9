"""Checkpoints and pickling: torch's state_dict layout (so torch's and lrfused's checkpoints load into each
other), plus the schedule's position and state, and the checks that refuse another optimizer's state."""
from __future__ import annotations

import torch

from .. import contract
from ..contract import SchedLayout
from .checks import MASTER_KEY
from .quantized import absmax_key, check_absmax


class CheckpointMixin:
    """Needs the optimizer's ``_GROUP_KEYS``, ``_state_keys``, ``_allowed_state_keys``,
    ``_required_loaded_keys``, ``_check_loaded_group_meaning``, ``_validate_group`` and the schedule state."""

    # ---- pickling ------------------------------------------------------------------------------
    _EXTRA_ATTRS = ("_state_dtype", "_max_grad_norm", "_clip_buffer", "_sched_states", "_report_states",
                    "_host_steps", "_has_dtensor", "_sr_seed")

    def __getstate__(self):
        state = super().__getstate__()  # defaults, state, param_groups
        state.update({name: self.__dict__[name] for name in self._EXTRA_ATTRS if name in self.__dict__})
        return state  # the C++ plan is not picklable: rebuilt on the next step

    def __setstate__(self, state):
        super().__setstate__(state)
        self.__dict__.setdefault("_report_states", {})  # pickles from before GreedyLR
        self.__dict__.setdefault("_sr_seed", 0)  # pickles from before stochastic rounding
        # pickles from before sched_state's header grew: today's layout, as for checkpoints
        self._sched_states = {d: self._upgraded_sched_state(s) for d, s in self.__dict__.get("_sched_states", {}).items()}
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
                         "report_state": {str(d): s.detach().cpu().clone() for d, s in self._report_states.items()},
                         "host_steps": self._host_steps, "sr_seed": self._sr_seed}
        return sd

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        extra = state_dict.pop("lrfused", None)
        saved_groups = state_dict.get("param_groups", [])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"lrfused: loaded state dict has {len(saved_groups)} param groups, this optimizer has "
                             f"{len(self.param_groups)}")
        # What a loaded group keeps of this optimizer's where the checkpoint has none (torch's or older
        # lrfused checkpoints): its schedules, then the defaults. Every group is checked before anything changes.
        own = [{"schedule": g["schedule"], "hyper_schedules": g.get("hyper_schedules", {})} for g in self.param_groups]
        # The memory options are how this optimizer was built, not a hyperparameter a checkpoint changes: a
        # checkpoint with master copies loads into an optimizer without them (the copies are dropped) and
        # one without into an optimizer with them (made from the parameters); 8-bit state loads into a
        # 32-bit optimizer (dequantized) and full-precision state into an 8-bit one (quantized).
        built = [{"stochastic_rounding": g.get("stochastic_rounding", False),
                  "master_weights": g.get("master_weights", False), "optim_bits": g.get("optim_bits", 32)}
                 for g in self.param_groups]
        # torch's load casts every floating-point state tensor to its parameter's dtype, which would round
        # float32 state (and master copies) of 16-bit parameters through 16 bits: they are taken from the
        # checkpoint itself below.
        self._check_loaded_state(state_dict)
        saved_states = self._saved_states_by_param(state_dict)
        for saved, kept, options in zip(saved_groups, own, built):  # as each group will be after the load
            self._complete_loaded_group(dict({k: v for k, v in saved.items() if k != "params"}, **options), kept)
        if extra is not None:
            self._check_saved_report_states(extra.get("report_state", {}))
        super().load_state_dict(state_dict)
        for group, kept, options in zip(self.param_groups, own, built):
            group.update(options)
            self._complete_loaded_group(group, kept)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    self._adopt_loaded_state(p, group, state, saved_states.get(p, {}))
        self._sched_states = {}
        self._report_states = {}
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
            self._sr_seed = int(extra.get("sr_seed", self._sr_seed))
            self._sched_states = self._map_saved_sched_states(extra.get("sched_state", {}))
            self._report_states = self._map_saved_report_states(extra.get("report_state", {}))
        else:  # a torch optimizer's checkpoint: the schedule position is the parameters' step count
            self._host_steps = int(max((float(st["step"]) for st in self.state.values() if "step" in st), default=0))
            for device in {p.device for g in self.param_groups for p in g["params"]}:
                self._sched_state(device)[SchedLayout.STEP] = self._host_steps
        self._invalidate()

    def _complete_loaded_group(self, group: dict, kept: dict) -> None:
        """Fills what a loaded group lacks (``kept``: this optimizer's schedules for it, then the defaults) and
        checks it, raising as the constructor would."""
        for key, value in (*kept.items(), *self.defaults.items()):  # keys older checkpoints (or torch's) lack
            group.setdefault(key, value)
        group["hyper_schedules"] = self._normalized_hyper_schedules(group.get("hyper_schedules"))
        self._check_group(group)

    def _check_saved_report_states(self, saved: dict) -> None:
        """A saved GreedyLR state must be one its state machine can continue from: counters that are
        counts and a smoothing window whose position lies inside it (they index device memory)."""
        plateau = self._plateau_schedule()
        if plateau is None or plateau._report_state_size() == 0:  # ReduceLROnPlateau keeps none
            return
        slots, size = contract.GREEDY_SLOTS, plateau._report_state_size()
        window = size - slots["ring"]
        for name, s in saved.items():
            if not isinstance(s, torch.Tensor) or s.numel() != size:
                continue  # another window size: dropped when mapped (a fresh machine)
            v = s.detach().to("cpu", torch.float64).tolist()
            count, head = v[slots["window_count"]], v[slots["window_head"]]
            counters = (v[slots["num_good_epochs"]], v[slots["warmup_counter"]], v[slots["at_min_reductions"]])
            if not (all(c >= 0 and c == int(c) for c in counters + (count, head))
                    and count <= window and (window == 0 or head < window)):
                raise ValueError(f"lrfused: the saved GreedyLR state for {name} is not one GreedyLR can reach "
                                 f"(window count {count}, head {head}, window {window})")

    def _map_saved_report_states(self, saved: dict) -> dict:
        """GreedyLR's saved state, on the devices of the parameters: by name, else any saved one (every
        device's copy is fed the same metrics, so they agree). A size that does not fit this optimizer's
        schedule (another smoothing window) is dropped: the machine starts fresh, as a new GreedyLR would."""
        saved = {str(name): s for name, s in saved.items()}
        plateau = self._plateau_schedule()
        if not saved or plateau is None:
            return {}
        devices = {p.device for g in self.param_groups for p in g["params"]}
        out = {}
        for device in devices:
            s = saved.get(str(device), next(iter(saved.values())))
            if s.numel() == plateau._report_state_size():
                out[device] = s.to(device=device, dtype=torch.float64).clone()
        return out

    # sched_state's header before it held the scheduled hyperparameters' scratch slots (lrfused 0.x checkpoints).
    _LEGACY_HEADER = 8

    def _upgraded_sched_state(self, s: torch.Tensor) -> torch.Tensor:
        """A sched_state saved by an earlier lrfused in today's layout (contract.SchedLayout): the header of 8
        grown to today's (the new slots are CUDA scratch, rewritten every step) and, from before the next-lr
        and next-momentum regions, those regions added. Today's layout is returned as it is."""
        num_groups, old = len(self.param_groups), self._LEGACY_HEADER
        if s.numel() == old + 2 * num_groups:  # [header, last_lr, plateau_lr]
            momenta = torch.tensor([self._momentum_at(g, 0) for g in range(num_groups)], dtype=s.dtype, device=s.device)
            s = torch.cat([s, s[old:old + num_groups], momenta])
        if s.numel() == old + len(SchedLayout.REGIONS) * num_groups:
            s = torch.cat([s[:old], torch.zeros(SchedLayout.HEADER - old, dtype=s.dtype, device=s.device), s[old:]])
        return s

    def _map_saved_sched_states(self, saved: dict) -> dict:
        """The schedule position saved under each device's name, put on the devices that hold the
        parameters now: by name where the device is the same, else the most advanced saved state (every
        device's counter advances on every step, so they agree). A cuda:0 checkpoint resumes on cuda:1 or on
        a CPU-only host at the step it was saved at."""
        saved = {str(name): s for name, s in saved.items()}
        if not saved:
            return {}
        saved = {name: self._upgraded_sched_state(s) for name, s in saved.items()}
        most_advanced = max(saved.values(), key=lambda s: float(s[SchedLayout.STEP]))
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
                if key.endswith("_absmax") or key == "step":
                    continue
                if isinstance(value, torch.Tensor) and value.shape != p.shape:
                    raise ValueError(f"lrfused: loaded state '{key}' has shape {tuple(value.shape)}, its parameter "
                                     f"has shape {tuple(p.shape)}")
                if isinstance(value, torch.Tensor) and value.dtype == torch.uint8:  # 8-bit: its block scales too
                    if key not in self._QUANTIZED_KEYS:
                        raise ValueError(f"lrfused: loaded state '{key}' of parameter {pid} is uint8, which "
                                         f"{type(self).__name__} stores in 8 bits only for {sorted(self._QUANTIZED_KEYS)}")
                    check_absmax(st.get(absmax_key(key)), p, key, f"loaded state of parameter {pid}")
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

    def _saved_states_by_param(self, state_dict: dict) -> dict:
        """The checkpoint's own per-parameter state dicts, by this optimizer's parameter."""
        ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        params = [p for g in self.param_groups for p in g["params"]]
        return {p: state_dict["state"][i] for i, p in zip(ids, params) if i in state_dict["state"]}

    def _adopt_loaded_state(self, p, group, state, saved: dict) -> None:
        """Brings a loaded per-parameter state into lrfused's layout: step as a float32 tensor on the
        parameter's device, buffers in the state dtype and master copies in float32, converted from the
        checkpoint's own tensors (``saved``), not from torch's copies rounded to the parameter's dtype."""
        if "step" in state:
            state["step"] = torch.as_tensor(state["step"], dtype=torch.float32).to(p.device).reshape(())
        dtype = self._state_dtype_for(p)
        for key, key_dtype in (*((k, dtype) for k in self._state_keys(group)), (MASTER_KEY, torch.float32)):
            value = saved.get(key)
            if isinstance(value, torch.Tensor) and state.get(key) is not None:
                if value.dtype == torch.uint8:  # 8-bit codes and their scales, as saved (_init_state converts)
                    state[key] = value.detach().to(device=p.device, copy=True)
                    state[absmax_key(key)] = saved[absmax_key(key)].detach().to(device=p.device, dtype=torch.float32,
                                                                                copy=True)
                else:
                    state[key] = value.detach().to(device=p.device, dtype=key_dtype, copy=True)
                    state.pop(absmax_key(key), None)
        self._init_state(p, group, create_master=False)  # a missing master is made at the next step
