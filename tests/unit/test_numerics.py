"""The process-wide numeric switches restore what they change (echogen.numerics)."""

import os

import pytest
import torch

from echogen.numerics import AUTOCAST, deterministic, tf32_off


def test_deterministic_sets_and_restores_the_flags():
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch.backends.cudnn.benchmark = True
    try:
        with deterministic():
            assert torch.are_deterministic_algorithms_enabled()
            assert torch.is_deterministic_algorithms_warn_only_enabled()
            assert torch.backends.cudnn.benchmark is False
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
        assert torch.backends.cudnn.benchmark is True
        assert torch.are_deterministic_algorithms_enabled() == before[0]
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = before[2]


def test_deterministic_restores_after_an_error():
    enabled = torch.are_deterministic_algorithms_enabled()
    with pytest.raises(RuntimeError, match="inside"), deterministic():
        raise RuntimeError("inside")
    assert torch.are_deterministic_algorithms_enabled() == enabled


def test_tf32_off_sets_and_restores():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with tf32_off():
            assert not torch.backends.cuda.matmul.allow_tf32
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_autocast_names_the_dtypes():
    assert AUTOCAST == {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
