"""The training data order is a function of (seed, step): resuming and sharding do not change it."""
import pytest

from cad.experiment.data_order import StepBatchSampler, StepDataLoader


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


def test_the_loader_state_is_the_order_and_a_resume_under_another_order_is_refused():
    def loader(total_steps=20, seed=3, world_size=1):
        sampler = StepBatchSampler(50, 8, total_steps, seed=seed, world_size=world_size)
        return StepDataLoader(list(range(50)), batch_sampler=sampler)

    state = loader().state_dict()
    assert state == {"order": {"num_items": 50, "global_batch_size": 8, "seed": 3}}
    # the same order on another device count, or a run extended to more steps: accepted
    loader(total_steps=40, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="seed 3 -> 4"):
        loader(seed=4).load_state_dict(state)
