"""Stable Diffusion's own frozen text encoder (CLIP ViT-L/14 in SD 1.x), which turns the semantic-map task's captions
into the UNet's cross-attention states at the paper scale (issue 12; paper sec. 4.1: BLIP-2 captions of ADE20K).

``SDTextEncoder(captions) -> (B, 77, D)``: each caption tokenised by the SD folder's tokenizer, padded / truncated to
its 77 tokens, and the text model's last hidden states (what SD 1.x cross-attends to, padding states included). The
empty caption's states are the null text condition (SD's unconditional branch). Loaded offline from the local SD
folder's ``tokenizer/`` and ``text_encoder/``; ``SDTextEncoder.tiny`` builds a randomly initialised one for tests.
"""
from __future__ import annotations

import string
from pathlib import Path

import torch
from torch import Tensor, nn

SD_TEXT_HELP = ("provide the Stable Diffusion 1.x folder's tokenizer/ and text_encoder/ (diffusers layout; see "
                "cad.backbones.sd_controlnet for how to obtain the folder)")


class SDTextEncoder(nn.Module):
    def __init__(self, tokenizer, text_model: nn.Module):
        super().__init__()
        self.tokenizer = tokenizer
        self.text_model = text_model.requires_grad_(False).eval()

    @property
    def width(self) -> int:
        return self.text_model.config.hidden_size

    def train(self, mode: bool = True) -> "SDTextEncoder":
        return super().train(False)  # frozen

    @torch.no_grad()
    def forward(self, captions: list[str]) -> Tensor:
        ids = self.tokenizer(list(captions), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        device = next(self.text_model.parameters()).device
        return self.text_model(ids.to(device)).last_hidden_state

    @classmethod
    def tiny(cls, seed: int = 0, width: int = 32) -> "SDTextEncoder":
        """A character-level CLIP tokenizer (lowercase letters) and a 2-layer CLIP text model of ``width``."""
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

        letters = list(string.ascii_lowercase)
        vocab = {t: i for i, t in enumerate(["<|startoftext|>", "<|endoftext|>"] + letters
                                            + [c + "</w>" for c in letters])}
        tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
        config = CLIPTextConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width,
                                num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=77,
                                bos_token_id=0, eos_token_id=1, pad_token_id=1)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return cls(tokenizer, CLIPTextModel(config))

    def save(self, path: str | Path) -> None:
        """Write ``path/tokenizer`` and ``path/text_encoder`` in the SD folder layout (tests build tiny folders)."""
        self.tokenizer.save_pretrained(Path(path) / "tokenizer")
        self.text_model.save_pretrained(Path(path) / "text_encoder")


def load_sd_text_encoder(path: str | Path) -> SDTextEncoder:
    """The SD folder ``path``'s tokenizer and text encoder, offline; a clear error names what is missing."""
    from transformers import CLIPTextModel, CLIPTokenizer

    root = Path(path)
    for sub, name in (("tokenizer", "tokenizer_config.json"), ("text_encoder", "config.json")):
        if not (root / sub / name).is_file():
            raise FileNotFoundError(f"Stable Diffusion text encoder not found: {root / sub / name} is missing; "
                                    f"{SD_TEXT_HELP}")
    tokenizer = CLIPTokenizer.from_pretrained(root / "tokenizer", local_files_only=True)
    return SDTextEncoder(tokenizer, CLIPTextModel.from_pretrained(root / "text_encoder", local_files_only=True))
