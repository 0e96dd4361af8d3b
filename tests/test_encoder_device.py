"""MMSEARCH_DEVICE: where torch-backed encoders run."""

from __future__ import annotations

import pytest
import torch

from mmsearch.encoders.device import device_from_env
from mmsearch.errors import EncoderError


@pytest.mark.parametrize("raw", ["", "cpu", " CPU "])
def test_cpu_is_the_default(monkeypatch, raw):
    monkeypatch.setenv("MMSEARCH_DEVICE", raw)
    assert device_from_env() == "cpu"


@pytest.mark.parametrize(("gpu", "expected"), [(True, "cuda"), (False, "cpu")])
def test_auto_follows_what_torch_sees(monkeypatch, gpu, expected):
    monkeypatch.setenv("MMSEARCH_DEVICE", "auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    assert device_from_env() == expected


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setenv("MMSEARCH_DEVICE", "cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EncoderError, match="no CUDA device"):
        device_from_env()


def test_cuda_with_a_gpu_is_kept(monkeypatch):
    monkeypatch.setenv("MMSEARCH_DEVICE", "cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_from_env() == "cuda:1"


def test_unknown_device_names_the_choices(monkeypatch):
    monkeypatch.setenv("MMSEARCH_DEVICE", "tpu")
    with pytest.raises(EncoderError, match="cpu, cuda, cuda:N or auto"):
        device_from_env()
