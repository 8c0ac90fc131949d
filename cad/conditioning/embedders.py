"""Embedders that turn a :class:`~cad.conditioning.condition.Condition` into what a backbone consumes.

Both backbones share them, so a condition means the same thing to RIN and to the U-Net:

- the noise level ``gamma`` and the coherence score ``c`` are each a scalar per sample, embedded by
  :class:`ScalarEmbedder` (sinusoid -> MLP). The coherence gets its *own* embedder, hence its own token in RIN
  (paper sec. 4.1: "a sinusoidal positional embedding that we map with an MLP ... added in the latent branch of RIN,
  similar to the class token");
- the class label by :class:`LabelEmbedder`, with an explicit learned null embedding (DiT ``LabelEmbedder``);
- with ``mix_label_coherence`` (the authors' option ``mix_labels_and_confidence``) the label and coherence vectors
  are merged by :class:`LabelCoherenceMixer` into one vector, so the coherence can gate the label multiplicatively
  instead of being added beside it;
- text-encoder states by a linear projection (:class:`ConditionEmbedder` returns them with their mask);
- a dense condition (semantic map) and its per-pixel coherence are extra input channels
  (:func:`append_condition_maps`), as the paper's ControlNet experiment concatenates them (sec. 4.1).

Which fields a backbone needs is fixed at construction by a :class:`ConditioningSpec`; a configured field missing
from the ``Condition`` raises a ``ValueError`` naming it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from cad.conditioning.condition import Condition

# Time and coherence are both in [0, 1]; the sinusoid sees them at the resolution of 1000 diffusion steps
# (the authors' ``time_scaling: 1000.0``, used for the coherence embedder of their text model too).
TIME_SCALE = 1000.0
COHERENCE_SCALE = 1000.0
# The control metadata's gate over the denoising steps: gamma (the signal level; MetadataEmbedder's docstring) or none
# (the metadata at full strength at every step: the ablation that says what the gate does).
METADATA_GATES = ("gamma", "none")


@dataclass(frozen=True)
class ConditioningSpec:
    """Which conditions a backbone was built for; the single place that decides how coherence enters.

    ``use_coherence`` with no ``map_channels``: one scalar per sample (``cond.coherence``) -> its own token/vector.
    ``use_coherence`` with ``map_channels``: the per-pixel ``cond.coherence_map`` -> one extra input channel beside
    the spatial map (the paper's segmentation setting has a coherence *map*, sec. 4.1); no scalar is read then.
    """

    num_classes: int | None
    use_coherence: bool
    token_dim: int | None = None
    map_channels: int | None = None
    mix_label_coherence: bool = False
    metadata_dim: int | None = None  # control metadata values per sample (on the time path, gated by gamma)
    coherence_as_metadata: bool = False  # the coherence as one more metadata value instead of its own token
    metadata_gate: str = "gamma"  # what scales the metadata embedding over the steps (METADATA_GATES)

    def __post_init__(self):
        if self.metadata_gate not in METADATA_GATES:
            raise ValueError(f"metadata_gate={self.metadata_gate!r} is not valid; valid: {', '.join(METADATA_GATES)}")
        if self.coherence_as_metadata and not (self.use_coherence and self.map_channels is None):
            raise ValueError("coherence_as_metadata needs a scalar coherence (use_coherence=True, no map_channels)")
        if self.coherence_as_metadata and self.mix_label_coherence:
            raise ValueError("coherence_as_metadata and mix_label_coherence are two places for the coherence: pick one")
        if self.mix_label_coherence and (self.num_classes is None or not self.coherence_token):
            raise ValueError("mix_label_coherence merges the label and coherence embeddings: it needs num_classes "
                             "and a scalar coherence (use_coherence=True, no map_channels)")

    @property
    def coherence_token(self) -> bool:
        return self.use_coherence and self.map_channels is None and not self.coherence_as_metadata

    @property
    def metadata_values(self) -> int:
        """Values the metadata embedder reads per sample: the metadata, and the coherence when it is metadata."""
        return (self.metadata_dim or 0) + int(self.coherence_as_metadata)

    @property
    def coherence_map(self) -> bool:
        return self.use_coherence and self.map_channels is not None

    @property
    def extra_channels(self) -> int:
        """Input channels added to ``x_t`` by :func:`append_condition_maps`."""
        return (self.map_channels or 0) + int(self.coherence_map)

    @property
    def num_vectors(self) -> int:
        """Per-sample condition vectors produced by :class:`ConditionEmbedder`: time, [label], [coherence]
        (label and coherence are one vector when mixed)."""
        return 1 + int(self.num_classes is not None) + int(self.coherence_token) - int(self.mix_label_coherence)

    def check(self, cond: Condition, batch_size: int) -> None:
        """Raise a ``ValueError`` naming the first configured field that ``cond`` lacks or mis-sizes."""
        needed = []
        if self.num_classes is not None:
            needed.append(("label", f"num_classes={self.num_classes}"))
        if self.coherence_token:
            needed.append(("coherence", "use_coherence=True"))
        if self.token_dim is not None:
            needed.append(("tokens", f"token_dim={self.token_dim}"))
        if self.map_channels is not None:
            needed.append(("spatial_map", f"map_channels={self.map_channels}"))
        if self.coherence_map:
            needed.append(("coherence_map", "use_coherence=True with map_channels set"))
        if self.metadata_dim:
            needed.append(("metadata", f"metadata_dim={self.metadata_dim}"))
        if self.coherence_as_metadata:
            needed.append(("coherence", "coherence_as_metadata=True"))
        for name, reason in needed:
            value = getattr(cond, name)
            if value is None:
                raise ValueError(f"Condition.{name} is None, but the backbone was built with {reason}")
            if value.shape[0] != batch_size:
                raise ValueError(f"Condition.{name} has batch size {value.shape[0]}, x_t has {batch_size}")
        if self.token_dim is not None and cond.tokens.shape[-1] != self.token_dim:
            raise ValueError(f"Condition.tokens has width {cond.tokens.shape[-1]}, expected token_dim={self.token_dim}")
        if self.map_channels is not None and cond.spatial_map.shape[1] != self.map_channels:
            raise ValueError(
                f"Condition.spatial_map has {cond.spatial_map.shape[1]} channels, "
                f"expected map_channels={self.map_channels}"
            )


def sinusoidal_embedding(x: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Transformer sinusoidal encoding (Vaswani et al. 2017) of one real value per sample: (B,) -> (B, dim).

    ``[cos(x f_i), sin(x f_i)]`` with frequencies ``f_i = max_period ** (-i / (dim/2 - 1))`` from 1 down to
    ``1 / max_period`` (both ends included, as the authors' ``PositionalEmbedding(endpoint=True)``).
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding needs an even dim, got {dim}")
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=x.device) / max(half - 1, 1)
    freqs = max_period ** -exponent
    angles = x.float()[:, None] * freqs[None]
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


class ScalarEmbedder(nn.Module):
    """A scalar per sample (noise level ``gamma`` or coherence ``c``) -> a ``dim`` vector.

    ``scale * s`` -> sinusoid of ``sinusoid_dim`` -> standardised per sample -> Linear -> SiLU -> Linear.
    The widths follow the authors' RIN ``TimeEmbedder`` (sinusoid of ``dim / 4``, MLP ``dim/4 -> dim -> dim``), and
    so does the per-sample standardisation of the sinusoid (zero mean, unit std before the MLP).
    """

    def __init__(self, dim: int, sinusoid_dim: int, scale: float):
        super().__init__()
        self.sinusoid_dim = sinusoid_dim
        self.scale = scale
        self.mlp = nn.Sequential(nn.Linear(sinusoid_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, s: Tensor) -> Tensor:
        emb = sinusoidal_embedding(self.scale * s, self.sinusoid_dim)
        emb = (emb - emb.mean(dim=-1, keepdim=True)) / (emb.std(dim=-1, keepdim=True) + 1e-6)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    """Class label -> vector, with an explicit learned null embedding (DiT ``LabelEmbedder``, STYLE habit 6).

    An embedding table is a linear map of the one-hot label (the authors' ``nn.Linear(num_classes, dim)``, same
    parameter count: ``num_classes * dim`` + the ``dim`` null vector in place of the bias). Where
    ``label_null[i]`` is True the null embedding replaces the class embedding; that sample's label is ignored.
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes, dim)
        self.null = nn.Parameter(torch.empty(dim))
        nn.init.normal_(self.table.weight, std=0.02)
        nn.init.normal_(self.null, std=0.02)

    def forward(self, label: Tensor, label_null: Tensor | None) -> Tensor:
        if label_null is None:
            return self.table(label)
        emb = self.table(label.masked_fill(label_null, 0))
        return torch.where(label_null[:, None], self.null.to(emb.dtype).expand_as(emb), emb)


class MetadataEmbedder(nn.Module):
    """Control metadata (M values per sample) -> a ``dim`` vector added to the time embedding, gated by the signal
    level: ``gamma * MLP(concat_i sinusoid(1000 m_i))``, a learned null vector where ``metadata_null``.

    The multi-level conditioning paper gates control metadata in over the denoising steps with a cosine schedule; the
    gate here is gamma itself (our choice: 0 at pure noise, 1 on clean data, and exactly cos^2(pi t / 2) under the
    cosine sampling schedule), so metadata such as a flip or a crop shape the late, detailed steps more than the
    early, global ones. ``gate="none"`` drops the factor gamma (an ablation, off by default)."""

    def __init__(self, num_values: int, dim: int, sinusoid_dim: int, gate: str = "gamma"):
        super().__init__()
        self.num_values, self.sinusoid_dim, self.gate = num_values, sinusoid_dim, gate
        self.mlp = nn.Sequential(nn.Linear(num_values * sinusoid_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.null, std=0.02)

    def forward(self, values: Tensor, gamma: Tensor, null: Tensor | None = None) -> Tensor:
        if values.shape[-1] != self.num_values:
            raise ValueError(f"metadata has {values.shape[-1]} values per sample, expected {self.num_values}")
        sinusoids = [sinusoidal_embedding(COHERENCE_SCALE * values[:, i], self.sinusoid_dim)
                     for i in range(self.num_values)]
        emb = self.mlp(torch.cat(sinusoids, dim=-1).to(self.mlp[0].weight.dtype))
        if null is not None:
            emb = torch.where(null[:, None], self.null.to(emb.dtype).expand_as(emb), emb)
        return emb if self.gate == "none" else gamma.to(emb.dtype)[:, None] * emb


class LabelCoherenceMixer(nn.Module):
    """The label and coherence vectors -> one vector: ``Linear(2D, D) -> SiLU -> Linear(D, D)`` of their concatenation.

    The authors name this option ``mix_labels_and_confidence`` (their class-conditional config); its code is not in
    their released package (cad-diffusion 1.2), so this form is our documented choice: the smallest MLP that can
    express a product of the two (a sum, as without mixing, cannot let ``c = 0`` remove the label)."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, label: Tensor, coherence: Tensor) -> Tensor:
        return self.mlp(torch.cat([label, coherence.to(label.dtype)], dim=-1))


def masked_mean(tokens: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the valid tokens: (B, L, D), (B, L) bool -> (B, D). Masked tokens have exactly no influence."""
    if mask is None:
        return tokens.mean(dim=1)
    weights = mask.to(tokens.dtype)[..., None]
    total = torch.where(mask[..., None], tokens, torch.zeros_like(tokens)).sum(dim=1)
    return total / weights.sum(dim=1).clamp(min=1.0)


class ConditionEmbedding(NamedTuple):
    vectors: Tensor  # (B, n, D): time, then label, then coherence (those configured)
    tokens: Tensor | None  # (B, L, D) projected text tokens
    token_mask: Tensor | None  # (B, L) bool, True = valid


class ConditionEmbedder(nn.Module):
    """Embeds ``gamma`` and the non-spatial fields of a :class:`Condition` at width ``dim``.

    RIN concatenates ``vectors`` and ``tokens`` to its latents; the U-Net sums ``vectors`` and adds the masked
    mean of ``tokens``. ``sinusoid_dim`` is the width of the sinusoids fed to the time and coherence MLPs.
    """

    def __init__(self, spec: ConditioningSpec, dim: int, sinusoid_dim: int):
        super().__init__()
        self.spec = spec
        self.time = ScalarEmbedder(dim, sinusoid_dim, TIME_SCALE)
        self.label = LabelEmbedder(spec.num_classes, dim) if spec.num_classes is not None else None
        self.coherence = ScalarEmbedder(dim, sinusoid_dim, COHERENCE_SCALE) if spec.coherence_token else None
        self.mixer = LabelCoherenceMixer(dim) if spec.mix_label_coherence else None
        self.metadata = (MetadataEmbedder(spec.metadata_values, dim, sinusoid_dim, spec.metadata_gate)
                         if spec.metadata_values else None)
        self.token_proj = nn.Linear(spec.token_dim, dim) if spec.token_dim is not None else None

    def forward(self, gamma: Tensor, cond: Condition) -> ConditionEmbedding:
        vectors = [self.time(gamma)]
        if self.label is not None:
            vectors.append(self.label(cond.label, cond.label_null))
        if self.coherence is not None:
            vectors.append(self.coherence(cond.coherence))
        if self.mixer is not None:
            vectors[1:] = [self.mixer(*vectors[1:])]
        if self.metadata is not None:  # the control level: on the time path, not a token of its own
            values = [] if cond.metadata is None else [cond.metadata.float()]
            if self.spec.coherence_as_metadata:
                values.append(cond.coherence.float()[:, None])
            vectors[0] = vectors[0] + self.metadata(torch.cat(values, dim=1), gamma, cond.metadata_null)
        tokens = mask = None
        if self.token_proj is not None:
            tokens = self.token_proj(cond.tokens.to(self.token_proj.weight.dtype))
            mask = cond.token_mask
            if mask is not None:
                mask = mask.bool()
                # A masked token's value must not matter even where it is a query (RIN latents): zero it.
                tokens = torch.where(mask[..., None], tokens, torch.zeros_like(tokens))
        return ConditionEmbedding(torch.stack(vectors, dim=1), tokens, mask)


def append_condition_maps(x_t: Tensor, cond: Condition, spec: ConditioningSpec) -> Tensor:
    """``x_t`` with the spatial map and, with coherence, the coherence map as extra channels: (B, C + extra, H, W)."""
    if spec.map_channels is None:
        return x_t
    maps = [x_t, cond.spatial_map.to(x_t.dtype)]
    if spec.coherence_map:
        maps.append(cond.coherence_map.to(x_t.dtype))
    for m in maps[1:]:
        if m.shape[-2:] != x_t.shape[-2:]:
            raise ValueError(f"condition map of size {tuple(m.shape[-2:])} does not match x_t {tuple(x_t.shape[-2:])}")
    return torch.cat(maps, dim=1)
