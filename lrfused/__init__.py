"""lrfused: fused optimizer + learning-rate schedule kernels for PyTorch."""
from ._ops import has_cuda
from . import contract, schedules
from .optim import SGD, Adam, AdamW, ScheduleState
from . import _serialization  # noqa: F401  (schedules load under torch.load(weights_only=True))

__version__ = "0.1.0"

__all__ = ["SGD", "Adam", "AdamW", "ScheduleState", "schedules", "contract", "has_cuda", "__version__"]
