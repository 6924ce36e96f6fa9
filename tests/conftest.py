import faulthandler
import os
import sys

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def _cuda_skip_reason():
    """Why the `cuda`-marked tests cannot run here, or None when they can."""
    try:
        from lrfused import _ops
    except ImportError as exc:
        return f"needs lrfused to import ({exc})"
    if not _ops._C.built_with_cuda():
        return "needs lrfused built with its CUDA kernels (this build has none)"
    if not torch.cuda.is_available():
        return "needs a GPU (lrfused has its CUDA kernels, torch sees no GPU)"
    return None


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--runslow") or os.environ.get("LRFUSED_RUNSLOW") == "1"
    cuda_reason = _cuda_skip_reason()
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_cuda = pytest.mark.skip(reason=f"cuda: {cuda_reason}")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and cuda_reason is not None:
            item.add_marker(skip_cuda)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.cuda)])
def device(request):
    """The device a test runs on: every test that takes it runs once on the CPU and once on a GPU. The
    "cuda" run carries the `cuda` marker, so without a CUDA build of lrfused or without a GPU it is
    reported as skipped, with the reason (pytest_collection_modifyitems above)."""
    return request.param


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)


# LRFUSED_TEST_TIMEOUT=N (make gpu-check sets it): a test still running after N seconds (a hung kernel, a
# deadlock) dumps every thread's stack and ends the process, so that the run reports where it hung
# instead of eating the whole time budget.
_TEST_TIMEOUT = float(os.environ.get("LRFUSED_TEST_TIMEOUT", "0") or 0)


@pytest.fixture(autouse=True)
def _per_test_timeout():
    if _TEST_TIMEOUT <= 0:
        yield
        return
    faulthandler.dump_traceback_later(_TEST_TIMEOUT, exit=True, file=sys.stderr)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
