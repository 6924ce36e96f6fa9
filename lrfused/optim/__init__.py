"""SGD, Adam and AdamW: torch.optim.Optimizer subclasses whose step() applies the scheduled learning rate
inside one fused kernel pass.

Per (param group, device, dtype) "bucket" the optimizer hands its buffers once to a C++ launch plan; a step
is then one call that gathers the gradients in C++, checks them, updates every bucket and advances the
on-device step counter. Under torch.compile the same kernels are reached through the registered per-family
ops (``lrfused::fused_sgd_`` / ``fused_adam_``) with every tensor an explicit argument.

Rooms: ``base`` (the shared optimizer), ``checks``, ``schedule_state`` (incl. the public ``ScheduleState``
view), ``step`` (buckets, launch plan, op path), ``checkpoint``, and one file per family (``sgd``, ``adam``).
"""
from .adam import Adam, AdamW
from .schedule_state import ScheduleState
from .sgd import SGD
from .step import eager_op_path

__all__ = ["SGD", "Adam", "AdamW", "ScheduleState", "eager_op_path"]

for _cls in (SGD, Adam, AdamW, ScheduleState):  # pickled and shown as lrfused.optim.<Name>, whatever the room
    _cls.__module__ = __name__
del _cls
