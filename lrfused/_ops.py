"""Loading of the compiled extension and the fake (meta) implementations of its ops."""
import torch

try:
    from . import _C  # noqa: F401  (importing registers the TORCH_LIBRARY ops)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "lrfused's compiled extension (lrfused._C) is not built or does not match this torch "
        f"({torch.__version__}). Build it from the source tree with\n"
        "    pip install --no-build-isolation -e .\n"
        "or `make install` (see README.md). Original error: " + str(exc)
    ) from exc

ops = torch.ops.lrfused


@torch.library.register_fake("lrfused::fused_sgd_")
def _fused_sgd_fake(params, grads, momentum_buffers, steps, sched_state, program, group_index, *, base_lr, momentum,
                    dampening, weight_decay, nesterov, maximize, grad_scale=None, found_inf=None, grad_factor=None,
                    master_params=(), stochastic_rounding=False, sr_seed=0, sr_streams=(), momentum_buffer_absmax=()):
    return None


@torch.library.register_fake("lrfused::fused_adam_")
def _fused_adam_fake(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, sched_state, program, group_index,
                     *, base_lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay,
                     grad_scale=None, found_inf=None, grad_factor=None, master_params=(), stochastic_rounding=False,
                     sr_seed=0, sr_streams=(), exp_avg_absmax=(), exp_avg_sq_absmax=()):
    return None


@torch.library.register_fake("lrfused::advance_")
def _advance_fake(sched_state, found_inf):
    return None


@torch.library.register_fake("lrfused::plateau_report_")
def _plateau_report_fake(sched_state, metric, config, num_groups):
    return None


@torch.library.register_fake("lrfused::greedy_report_")
def _greedy_report_fake(sched_state, greedy_state, metric, config, num_groups):
    return None


@torch.library.register_fake("lrfused::grad_sq_norm")
def _grad_sq_norm_fake(grads, grad_scale):
    device = grads[0].device if grads else torch.device("cpu")
    return torch.empty((), dtype=torch.float64, device=device)


@torch.library.register_fake("lrfused::schedule_lrs")
def _schedule_lrs_fake(program, steps, base_lr):
    return torch.empty(steps.shape, dtype=torch.float64, device=steps.device)


@torch.library.register_fake("lrfused::schedule_momenta")
def _schedule_momenta_fake(program, steps, fallback):
    return torch.empty(steps.shape, dtype=torch.float64, device=steps.device)


def has_cuda() -> bool:
    """True when the CUDA kernels were built and a GPU is visible."""
    return bool(_C.built_with_cuda()) and torch.cuda.is_available()
