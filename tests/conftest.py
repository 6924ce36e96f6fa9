import os

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
