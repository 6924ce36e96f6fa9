"""The numbers shared with the C++: read from the extension at import (``csrc/contract.h``), never copied.

``KIND``, ``FIELDS``, ``node()``: schedule program nodes by kind and field name. ``SchedLayout``: the
per-device ``sched_state`` slots. ``OPTIMIZER``, ``FLAG``, ``HYPER_FIELDS``: the optimizer step's
arguments. ``PLATEAU_CONFIG``: ReduceLROnPlateau's configuration fields. ``DTYPE_PAIRS``: the (parameter,
state) dtypes the kernels implement. ``CLIP_EPS``, ``MAX_STACK``: constants.
"""
from __future__ import annotations

import types
from typing import Mapping, Sequence

import torch

from ._ops import _C

_TABLES = _C.contract()

#: Node kind ids by name: ``KIND.STEP``.
KIND = types.SimpleNamespace(**{name: k["id"] for name, k in _TABLES["kinds"].items()})
#: Node kind names by id.
KIND_NAMES: dict[int, str] = {k["id"]: name for name, k in _TABLES["kinds"].items()}
#: The fixed fields of each kind, in slot order: ``FIELDS["STEP"] == ("step_size", "gamma")``.
FIELDS: dict[str, tuple] = {name: tuple(k["fields"]) for name, k in _TABLES["kinds"].items()}
#: Fields of records inside a tail (OneCycleLR's phases).
RECORDS: dict[str, tuple] = {name: tuple(f) for name, f in _TABLES["records"].items()}
#: Values of enumerated fields: ``ENUMS["cyclic_scale"]["EXP_RANGE"]``.
ENUMS: dict[str, dict] = {name: dict(e) for name, e in _TABLES["enums"].items()}

PLATEAU_CONFIG: tuple = tuple(_TABLES["plateau_config"])
#: HuggingFace GreedyLR's configuration fields, and the slots of its ``greedy_state`` (the ring from ``ring``).
GREEDY_CONFIG: tuple = tuple(_TABLES["greedy_config"])
GREEDY_SLOTS: dict = dict(_TABLES["greedy_slots"])
OPTIMIZER = types.SimpleNamespace(**dict(_TABLES["optimizers"]))
FLAG = types.SimpleNamespace(**dict(_TABLES["flags"]))
#: The per-step hyperparameters of each optimizer family, by slot.
HYPER_FIELDS: dict[str, tuple] = {name: tuple(h) for name, h in _TABLES["hypers"].items()}
DTYPE_PAIRS: frozenset = frozenset((getattr(torch, p), getattr(torch, s)) for p, s in _TABLES["dtype_pairs"])
PARAM_DTYPES: frozenset = frozenset(p for p, _ in DTYPE_PAIRS)
#: optim_bits=8 state: uint8 codes (with a float32 absmax per QUANT_BLOCK elements), not a state_dtype.
QUANTIZED_STATE_DTYPE = torch.uint8
STATE_DTYPES: frozenset = frozenset(s for _, s in DTYPE_PAIRS if s != QUANTIZED_STATE_DTYPE)
QUANT_BLOCK: int = _TABLES["constants"]["quant_block"]
MIN_QUANT_NUMEL: int = _TABLES["constants"]["min_quant_numel"]
#: The 8-bit dynamic maps (bitsandbytes' create_dynamic_map), code -> value: "signed" and "unsigned".
DYNAMIC_MAPS: dict = {name: tuple(v) for name, v in _TABLES["dynamic_maps"].items()}
CLIP_EPS: float = _TABLES["constants"]["clip_eps"]
MAX_STACK: int = _TABLES["constants"]["max_stack"]
PLATEAU_MAX_GROUPS_CUDA: int = _TABLES["constants"]["plateau_max_groups_cuda"]
SCHED_SLOTS: dict = dict(_TABLES["sched_slots"])
SCHED_REGIONS: dict = dict(_TABLES["sched_regions"])


def node(kind: str, fields: Mapping[str, float], tail: Sequence[float] = (), children: Sequence[list] = ()) -> list:
    """One packed node: [kind, length, fields in the contract's slot order, tail, children]. ``fields`` must
    name exactly the kind's fields (a misspelt or missing one is a bug here, not a user error)."""
    names = FIELDS[kind]
    if set(fields) != set(names):
        raise AssertionError(f"lrfused: {kind} node packed with fields {sorted(fields)}, contract has {list(names)}")
    body = [float(fields[n]) for n in names]
    body.extend(float(v) for v in tail)
    for c in children:
        body.extend(c)
    return [float(getattr(KIND, kind)), float(2 + len(body))] + body


def record(name: str, fields: Mapping[str, float]) -> list:
    """One record of a tail (e.g. a OneCycleLR phase), in the contract's field order."""
    names = RECORDS[name]
    if set(fields) != set(names):
        raise AssertionError(f"lrfused: {name} record with fields {sorted(fields)}, contract has {list(names)}")
    return [float(fields[n]) for n in names]


def plateau_config(fields: Mapping[str, float], min_lrs: Sequence[float]) -> list:
    """The ``config`` argument of ``lrfused::plateau_report_``."""
    if set(fields) != set(PLATEAU_CONFIG):
        raise AssertionError(f"lrfused: plateau config with {sorted(fields)}, contract has {list(PLATEAU_CONFIG)}")
    return [float(fields[n]) for n in PLATEAU_CONFIG] + [float(m) for m in min_lrs]


def greedy_config(fields: Mapping[str, float], min_lrs: Sequence[float], max_lrs: Sequence[float],
                  init_lrs: Sequence[float]) -> list:
    """The ``config`` argument of ``lrfused::greedy_report_``."""
    if set(fields) != set(GREEDY_CONFIG):
        raise AssertionError(f"lrfused: greedy config with {sorted(fields)}, contract has {list(GREEDY_CONFIG)}")
    return [float(fields[n]) for n in GREEDY_CONFIG] + [float(v) for v in (*min_lrs, *max_lrs, *init_lrs)]


def greedy_state_size(window_size: int) -> int:
    """Number of float64 slots of a GreedyLR ``greedy_state`` with this smoothing window (0: no smoothing)."""
    return GREEDY_SLOTS["ring"] + int(window_size)


class SchedLayout:
    """Slots of the float64 ``sched_state`` of an optimizer with ``num_groups`` param groups: header slots
    (``step``, the plateau counters), then one region of ``num_groups`` slots per per-group quantity."""

    HEADER = SCHED_SLOTS["header"]
    STEP = SCHED_SLOTS["step"]
    PLATEAU_BEST = SCHED_SLOTS["plateau_best"]
    PLATEAU_BAD = SCHED_SLOTS["plateau_bad"]
    PLATEAU_COOLDOWN = SCHED_SLOTS["plateau_cooldown"]
    PLATEAU_EPOCH = SCHED_SLOTS["plateau_epoch"]
    REGIONS = tuple(sorted(SCHED_REGIONS, key=SCHED_REGIONS.get))

    __slots__ = ("num_groups",)

    def __init__(self, num_groups: int):
        self.num_groups = int(num_groups)

    @property
    def size(self) -> int:
        return self.HEADER + len(self.REGIONS) * self.num_groups

    def slot(self, region: str, group: int) -> int:
        """The slot of ``region`` ("last_lr", "plateau_lr", "next_lr", "next_momentum") of ``group``."""
        return self.HEADER + SCHED_REGIONS[region] * self.num_groups + group

    def region(self, region: str) -> slice:
        start = self.HEADER + SCHED_REGIONS[region] * self.num_groups
        return slice(start, start + self.num_groups)

    @classmethod
    def groups_of(cls, numel: int) -> int | None:
        """The number of groups of a sched_state of ``numel`` slots (None when no layout has that size)."""
        per_group = numel - cls.HEADER
        n = len(cls.REGIONS)
        return per_group // n if per_group >= n and per_group % n == 0 else None


# Composite kinds: (tail length, number of child nodes) from their fields (csrc/contract.h's layout notes).
_COMPOSITES = {
    "SEQUENTIAL": lambda f: (int(f["count"]) - 1, int(f["count"])),
    "CHAINED": lambda f: (0, int(f["count"])),
    "PER_EPOCH": lambda f: (0, 1),
    "CLAMP": lambda f: (0, 1),
    "RESTART": lambda f: (0, 1),
    "NOISE": lambda f: (int(f["count"]), 1),
    "HYPERS": lambda f: (int(f["count"]), int(f["count"]) + 1),
}


def unpack(program) -> dict:
    """The node tree of a packed program, by name: ``{"kind", "fields", "tail", "children"}`` (the inverse of
    ``node``; for tests and debugging)."""
    values = [float(v) for v in (program.tolist() if isinstance(program, torch.Tensor) else program)]

    def read(at: int) -> tuple[dict, int]:
        kind = KIND_NAMES[int(values[at])]
        end = at + int(values[at + 1])
        names = FIELDS[kind]
        fields = dict(zip(names, values[at + 2:at + 2 + len(names)]))
        pos = at + 2 + len(names)
        tail_len, num_children = _COMPOSITES.get(kind, lambda f: (end - pos, 0))(fields)
        tail = values[pos:pos + tail_len]
        pos += tail_len
        children = []
        for _ in range(num_children):
            child, pos = read(pos)
            children.append(child)
        if pos != end:
            raise ValueError(f"lrfused: malformed {kind} node at {at}: its parts end at {pos}, the node at {end}")
        return {"kind": kind, "fields": fields, "tail": tail, "children": children}, end

    tree, end = read(0)
    if end != len(values):
        raise ValueError(f"lrfused: {len(values) - end} values after the root node")
    return tree
