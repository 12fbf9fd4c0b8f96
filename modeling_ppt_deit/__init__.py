# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""PPT-DeiT: token Pruning & Pooling for DeiT/ViT in `transformers` (config, models, score functions)."""

from transformers import AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_ppt_deit import PPTDeiTConfig
from .modeling_ppt_deit import (
    CHECKPOINT_KEY_MAPPING,
    PPTCompressionRecord,
    PPTDeiTForImageClassification,
    PPTDeiTImageClassifierOutput,
    PPTDeiTModel,
    PPTDeiTModelOutput,
    PPTDeiTPreTrainedModel,
)
from .token_ops import SCORE_FUNCTIONS, ScoreInputs, register_score_function


# With the package installed, the Auto classes know "ppt_deit" without remote code.
AutoConfig.register("ppt_deit", PPTDeiTConfig, exist_ok=True)
AutoModel.register(PPTDeiTConfig, PPTDeiTModel, exist_ok=True)
AutoModelForImageClassification.register(PPTDeiTConfig, PPTDeiTForImageClassification, exist_ok=True)

__all__ = [
    "CHECKPOINT_KEY_MAPPING",
    "PPTCompressionRecord",
    "PPTDeiTConfig",
    "PPTDeiTForImageClassification",
    "PPTDeiTImageClassifierOutput",
    "PPTDeiTModel",
    "PPTDeiTModelOutput",
    "PPTDeiTPreTrainedModel",
    "SCORE_FUNCTIONS",
    "ScoreInputs",
    "register_score_function",
]
