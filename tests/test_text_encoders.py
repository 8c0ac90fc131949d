"""Frozen text encoders: the offline MiniLM stand-in, the paper's T5 path on a tiny random T5, the missing-weights
error."""
import pytest
import torch

from cad.conditioning.text_encoders import TextEncoderWeightsNotFoundError, load_text_encoder

CAPTIONS = ["a large trouser on the left and a small bag on the right", "an eight on the left and a one on the right"]


@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm")


def test_minilm_gives_frozen_token_states_with_a_padding_mask(minilm):
    states, mask = minilm(CAPTIONS + ["a"])
    assert states.shape == (3, 32, 384) and mask.shape == (3, 32) and mask.dtype == torch.bool
    counts = [len(minilm.tokenizer(c)["input_ids"]) for c in CAPTIONS + ["a"]]  # with [CLS] and [SEP]
    assert mask.sum(1).tolist() == counts
    assert not any(p.requires_grad for p in minilm.parameters()) and not states.requires_grad
    minilm.train()
    assert not minilm.model.training  # dropout stays off
    again, _ = minilm(CAPTIONS + ["a"])
    assert torch.equal(states, again)
    assert (states[0, mask[0]] - states[1, :mask[0].sum()]).abs().max() > 0.1  # different captions differ


def test_a_t5_encoder_loads_from_a_folder_offline(tmp_path, minilm):
    """The paper-scale path (FLAN-T5-XL) with a tiny random T5 saved beside a tokenizer: same interface."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=minilm.tokenizer.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    T5EncoderModel(config).save_pretrained(tmp_path)
    minilm.tokenizer.save_pretrained(tmp_path)
    encoder = load_text_encoder(str(tmp_path), max_length=16)
    states, mask = encoder(CAPTIONS)
    assert states.shape == (2, 16, 16) and encoder.dim == 16 and mask[:, 0].all()


def test_missing_weights_name_the_encoder_and_the_offline_stand_in(tmp_path):
    with pytest.raises(TextEncoderWeightsNotFoundError, match=r"'google/flan-t5-xl' is not on this machine.*minilm"):
        load_text_encoder("google/flan-t5-xl")
