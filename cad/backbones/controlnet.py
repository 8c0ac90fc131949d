"""ControlNet (Zhang, Rao & Agrawala, ICCV 2023) over the suite's U-Net: the semantic-map task's cpu-scale model
(paper sec. 4.1, Figure 6; issue 12; the paper scale uses diffusers' ``ControlNetModel.from_unet``).

A trainable copy of the frozen base denoiser's encoder (conditioning embedder, input convolution, down path and middle)
reads the noisy image with the *control image* added after its input convolution through a zero-initialised
convolution; the control image is the semantic map (one channel per class) concatenated with the per-pixel coherence
map (CAD) or the map alone (the Baseline). Each of the copy's skip features and its middle output enters the base's
decoder through a zero-initialised 1x1 convolution, so at initialisation the model is exactly the base. Train it with
AdamW, as ControlNet is: LAMB's trust ratio barely moves zero-initialised weights (README, U-Net init).
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cad.backbones.unet import UNet
from cad.conditioning import Condition


def zero_conv(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def stack_control_maps(cond: Condition, map_channels: int, use_coherence: bool) -> Tensor:
    """The control image: the one-hot map (``map_channels``), then, for CAD, the coherence map (1 channel)."""
    if cond.spatial_map is None or cond.spatial_map.shape[1] != map_channels:
        got = None if cond.spatial_map is None else cond.spatial_map.shape[1]
        raise ValueError(f"Condition.spatial_map must have {map_channels} channels, got {got}")
    maps = [cond.spatial_map]
    if use_coherence:
        if cond.coherence_map is None:
            raise ValueError("Condition.coherence_map is None, but the ControlNet was built with use_coherence")
        maps.append(cond.coherence_map)
    return torch.cat(maps, dim=1)


class ControlledUNet(nn.Module):
    """``forward(x_t, gamma, cond) -> (eps_hat, None)`` with ``cond.spatial_map`` (B, K, H, W) and, when
    ``use_coherence``, ``cond.coherence_map`` (B, 1, H, W); the other fields of ``cond`` go to the base as they are."""

    uses_self_conditioning = False
    channels_last = True  # its weights are stored NHWC (cad.tasks.base): faster oneDNN convolutions

    def __init__(self, base: UNet, map_channels: int, use_coherence: bool):
        super().__init__()
        if base.spec.map_channels is not None:
            raise ValueError("the base denoiser must not take the map itself: the ControlNet feeds it")
        self.base = base.requires_grad_(False)
        self.map_channels, self.use_coherence = map_channels, use_coherence
        self.control = copy.deepcopy(base).requires_grad_(True)
        del self.control.up, self.control.out_norm, self.control.conv_out  # the copy is an encoder
        width = base.conv_in.out_channels
        control_in = map_channels + int(use_coherence)
        self.hint = nn.Sequential(nn.Conv2d(control_in, width, 3, padding=1), nn.SiLU(), zero_conv(width, width, 3))
        with torch.no_grad():
            _, skips, _ = base.encode(torch.zeros(1, base.in_channels, base.image_size, base.image_size),
                                      torch.zeros(1), _probe_condition(base))
        self.zero_skips = nn.ModuleList(zero_conv(s.shape[1], s.shape[1]) for s in skips)
        self.zero_mid = zero_conv(skips[-1].shape[1], skips[-1].shape[1])

    def train(self, mode: bool = True) -> "ControlledUNet":
        super().train(mode)
        self.base.eval()  # frozen
        return self

    def control_image(self, cond: Condition) -> Tensor:
        return stack_control_maps(cond, self.map_channels, self.use_coherence).to(self.hint[0].weight.dtype)

    def forward(self, x_t: Tensor, gamma: Tensor, cond: Condition, self_cond: Tensor | None = None
                ) -> tuple[Tensor, None]:
        base_cond = cond.replace(spatial_map=None, coherence_map=None)
        with torch.no_grad():
            h, skips, vector = self.base.encode(x_t, gamma, base_cond)
        c_h, c_skips, _ = self.control.encode(x_t, gamma, base_cond, hint=self.hint(self.control_image(cond)))
        skips = [s + zero(c) for s, zero, c in zip(skips, self.zero_skips, c_skips)]
        h = h + self.zero_mid(c_h)
        return self.base.decode(h, skips, vector), None


def _probe_condition(base: UNet) -> Condition:
    """A one-sample condition with every field the base needs, to read its feature shapes."""
    spec = base.spec
    fields = {}
    if spec.num_classes is not None:
        fields.update(label=torch.zeros(1, dtype=torch.long), label_null=torch.zeros(1, dtype=torch.bool))
    if spec.coherence_token:
        fields["coherence"] = torch.ones(1)
    if spec.token_dim is not None:
        fields.update(tokens=torch.zeros(1, 1, spec.token_dim), token_mask=torch.ones(1, 1, dtype=torch.bool))
    return Condition(**fields)
