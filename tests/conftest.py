import faulthandler
import os
import sys

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def _cuda_ready():
    try:
        import lrfused
    except ImportError:
        return False
    return lrfused.has_cuda()


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--runslow") or os.environ.get("LRFUSED_RUNSLOW") == "1"
    cuda_ok = _cuda_ready()
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA build of lrfused and a GPU")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not cuda_ok:
            item.add_marker(skip_cuda)


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
