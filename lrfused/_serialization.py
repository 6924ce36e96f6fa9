"""Lets ``torch.load(..., weights_only=True)`` read lrfused checkpoints.

An optimizer's ``state_dict()`` keeps each param group's ``schedule`` object, and trainers (HuggingFace
Trainer, Lightning, torch.distributed.checkpoint users) reload optimizer checkpoints with
``weights_only=True``, which refuses classes it does not know. Schedules are plain data (their pickled
state is numbers, strings, tuples and child schedules, restored by setting attributes; no code runs), so
every Schedule class is added to torch's allowlist.
"""
import torch

from . import schedules as _schedules


def _schedule_classes():
    seen, todo = [], [_schedules.Schedule]
    while todo:
        cls = todo.pop()
        if cls not in seen:
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return seen


def register_safe_globals() -> None:
    torch.serialization.add_safe_globals(_schedule_classes())


register_safe_globals()
