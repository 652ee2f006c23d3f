import os
import random

import pytest
import torch

import kernels  # noqa: F401  (sets TRITON_INTERPRET on a machine without CUDA before any kernel import)
from kernels.device import current_device


@pytest.fixture(autouse=True)
def _runs_in_tmp(tmp_path_factory, monkeypatch):
    # `autotune` and `profile` write a run directory by default (runs/ under the working
    # directory): keep tests' runs out of the checkout.
    monkeypatch.setenv("INFERTUNE_RUNS", str(tmp_path_factory.getbasetemp() / "runs"))


@pytest.fixture
def seed() -> int:
    """A fresh seed per test run (inputs are random every time); it is printed on failure."""
    return random.SystemRandom().randrange(2**31)


@pytest.fixture
def device():
    return current_device()


def generator(dev: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=dev).manual_seed(seed)


def pytest_report_header(config):
    dev = current_device()
    return f"infertune kernels run on: {dev.label}; TRITON_INTERPRET={os.environ.get('TRITON_INTERPRET', '')}"
