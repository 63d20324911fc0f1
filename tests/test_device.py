import pytest
import torch

from rlteach.device import available_devices, default_device


def test_cpu_is_the_default(monkeypatch):
    monkeypatch.delenv("RLTEACH_DEVICE", raising=False)
    assert default_device() == torch.device("cpu")


def test_auto_picks_cuda_only_when_present(monkeypatch):
    monkeypatch.setenv("RLTEACH_DEVICE", "auto")
    assert default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert available_devices()[-1] == default_device().type


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RLTEACH_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        default_device()


def test_a_bad_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RLTEACH_DEVICE", "gpu0")
    with pytest.raises(ValueError, match="expected 'cpu', 'cuda', 'cuda:N' or 'auto'"):
        default_device()
