from cad.conditioning.condition import Condition
from cad.conditioning.embedders import (
    ConditionEmbedder,
    ConditionEmbedding,
    ConditioningSpec,
    LabelEmbedder,
    ScalarEmbedder,
    append_condition_maps,
    masked_mean,
    sinusoidal_embedding,
)

__all__ = [
    "Condition",
    "ConditionEmbedder",
    "ConditionEmbedding",
    "ConditioningSpec",
    "LabelEmbedder",
    "ScalarEmbedder",
    "append_condition_maps",
    "masked_mean",
    "sinusoidal_embedding",
]
