"""The training data order is a function of (seed, step): resuming and sharding do not change it."""
import pytest

from cad.experiment.data_order import StepBatchSampler


def test_resuming_at_a_step_yields_the_remaining_batches():
    full = list(StepBatchSampler(50, 8, 20, seed=3))
    resumed = StepBatchSampler(50, 8, 20, seed=3)
    resumed.start_step = 13
    assert list(resumed) == full[13:]
    assert len(full) == 20 and len(list(resumed)) == 7


def test_each_pass_is_a_permutation_and_passes_differ():
    sampler = StepBatchSampler(48, 8, 12, seed=0)
    batches = list(sampler)
    first, second = sum(batches[:6], []), sum(batches[6:], [])
    assert sorted(first) == list(range(48)) and sorted(second) == list(range(48))
    assert first != second


def test_ranks_split_the_global_batch():
    single = list(StepBatchSampler(40, 8, 5, seed=1))
    ranks = [list(StepBatchSampler(40, 8, 5, seed=1, rank=r, world_size=2)) for r in range(2)]
    for step in range(5):
        assert sorted(ranks[0][step] + ranks[1][step]) == sorted(single[step])


def test_bad_sizes_are_explained():
    with pytest.raises(ValueError, match="divisible"):
        StepBatchSampler(40, 9, 5, seed=0, world_size=2)
    with pytest.raises(ValueError, match="smaller than one global batch"):
        StepBatchSampler(4, 8, 5, seed=0)
