import pytest
import torch

from harivo import threads


def test_default_threads_are_half_the_cpus_at_least_one():
    assert threads.default_num_threads(cpus=2, env={}) == 1
    assert threads.default_num_threads(cpus=1, env={}) == 1
    assert threads.default_num_threads(cpus=16, env={}) == 8
    assert threads.default_num_threads(cpus=2, env={"HARIVO_THREADS": "3"}) == 3
    assert threads.default_num_threads(cpus=2, env={"HARIVO_THREADS": " "}) == 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match="HARIVO_THREADS"):
            threads.default_num_threads(cpus=2, env={"HARIVO_THREADS": bad})


def test_apply_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        assert threads.apply(1) == 1 and torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="num_threads"):
            threads.apply(0)
    finally:
        torch.set_num_threads(before)
