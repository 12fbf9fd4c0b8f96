# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""PPT-DeiT: DeiT / ViT with adaptive token Pruning & Pooling (Wu et al., arXiv 2310.01812).

The classes subclass `transformers`' DeiT modules and override only what PPT changes (each docstring lists what
differs from its parent, as transformers' `modular_*.py` files do):

- `PPTDeiTEmbeddings`: DIST token optional, so the non-distilled DeiTs (stored on the Hub as `vit`) load as they are.
- `PPTDeiTAttention`: log-size bias (proportional attention), and the CLS attention row / value norms / mean keys
  that the compression step needs; `scaled_dot_product_attention` unless full probabilities are asked for.
- `PPTDeiTLayer`: `x += Attn(LN1(x)); x = compress(x); x += MLP(LN2(x))`, compression only at scheduled layers.
- `PPTDeiTModel`, `PPTDeiTForImageClassification`: carry token sizes (and source maps) through the layers and
  return the compression records.

The tensor work of scoring, choosing, pruning and pooling lives in `token_ops.py`.
"""

import contextlib
import copy
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput
from transformers.models.deit.modeling_deit import (
    DeiTAttention,
    DeiTEmbeddings,
    DeiTForImageClassification,
    DeiTLayer,
    DeiTModel,
    DeiTPooler,
    DeiTPreTrainedModel,
)
from transformers.processing_utils import Unpack
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_ppt_deit import PPTDeiTConfig
from .token_ops import ScoreFunction, ScoreInputs, clamp_tokens_removed, compress, compute_scores, get_score_function


# Checkpoint key names -> ours. Most Hub DeiT repos were written by transformers 4.x (`encoder.layer.N.attention.
# attention.query`, ...), stock 5.x still saves that layout, and the non-distilled DeiTs are `vit` repos whose base
# model sits under `vit.`. transformers 5.x does not apply its own DeiT/ViT renames to custom-code classes, so
# `from_pretrained` passes these as its `key_mapping`. Each pattern fires once per key, in order.
CHECKPOINT_KEY_MAPPING = {
    r"^vit\.": "deit.",
    r"(?:^|(?<=\.))encoder\.layer\.(\d+)\.": r"layers.\1.",
    r"\.attention\.attention\.query\.": ".attention.q_proj.",
    r"\.attention\.attention\.key\.": ".attention.k_proj.",
    r"\.attention\.attention\.value\.": ".attention.v_proj.",
    r"\.attention\.output\.dense\.": ".attention.o_proj.",
    r"\.intermediate\.dense\.": ".mlp.fc1.",
    r"(layers\.\d+)\.output\.dense\.": r"\1.mlp.fc2.",
    r"^cls_classifier\.": "classifier.",
}


# --------------------------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class PPTCompressionRecord(ModelOutput):
    """What one reduction layer did.

    Args:
        scores (`torch.FloatTensor` of shape `(batch_size, tokens_before - num_protected)`):
            Normalised significance of the non-protected tokens entering the step.
        score_variance (`torch.FloatTensor` of shape `(batch_size,)`):
            Unbiased variance of `scores`; the sample is pruned when it is >= `prune_threshold`.
        pruned (`torch.BoolTensor` of shape `(batch_size,)`):
            The policy chosen per sample: `True` = pruned, `False` = pooled.
        (All three are None at a layer where the clamp `r <= (tokens_before - num_protected) // 2` left nothing to
        remove; then `tokens_after == tokens_before`.)
        layer_index (`int`): the layer (0-based).
        tokens_before (`int`) / tokens_after (`int`): sequence length entering and leaving the step.
        token_sizes (`torch.FloatTensor` of shape `(batch_size, tokens_after)`):
            How many input tokens each token leaving the step stands for (1 where nothing was merged into it).
        token_sources (`torch.FloatTensor` of shape `(batch_size, tokens_after, initial_tokens)`, *optional*):
            0/1 map of the input tokens (CLS, DIST, patches in raster order) that each token leaving the step covers;
            input patches covered by no token were pruned at this step or before. Only with `config.track_sources`
            (otherwise None, and nothing is computed for it).
    """

    scores: torch.FloatTensor | None = None
    score_variance: torch.FloatTensor | None = None
    pruned: torch.BoolTensor | None = None
    layer_index: int | None = None
    tokens_before: int | None = None
    tokens_after: int | None = None
    token_sizes: torch.FloatTensor | None = None
    token_sources: torch.FloatTensor | None = None


@dataclass
class PPTDeiTModelOutput(BaseModelOutputWithPooling):
    """`BaseModelOutputWithPooling` plus the token compression state.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch_size, final_tokens, hidden_size)`):
            Final tokens, `[CLS, (DIST), ...]`; `final_tokens` is 49 for the default DeiT-S schedule.
        token_sizes (`torch.FloatTensor` of shape `(batch_size, final_tokens)`):
            How many input tokens each final token stands for (1 where nothing was merged into it).
        token_sources (`torch.FloatTensor` of shape `(batch_size, final_tokens, initial_tokens)`, *optional*):
            0/1 map of the input tokens (CLS, DIST, patches in raster order) that each final token covers; input
            patches covered by no final token were pruned. Only with `config.track_sources`.
        compression (`tuple(PPTCompressionRecord)`, *optional*):
            One record per reduction layer with a configured `r > 0`, with `output_compression=True`.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            Embeddings and every layer's output; their lengths shrink after each reduction layer.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Per layer `(batch_size, num_heads, tokens, tokens)` attention probabilities (with the log-size term),
            `tokens` being the length entering that layer.
    """

    token_sizes: torch.FloatTensor | None = None
    token_sources: torch.FloatTensor | None = None
    compression: tuple[PPTCompressionRecord, ...] | None = None


@dataclass
class PPTDeiTImageClassifierOutput(ImageClassifierOutput):
    """`ImageClassifierOutput` plus `cls_logits` / `distillation_logits` (models with a distillation head, whose
    `logits` are their average) and the compression state of `PPTDeiTModelOutput`."""

    cls_logits: torch.FloatTensor | None = None
    distillation_logits: torch.FloatTensor | None = None
    token_sizes: torch.FloatTensor | None = None
    token_sources: torch.FloatTensor | None = None
    compression: tuple[PPTCompressionRecord, ...] | None = None


# --------------------------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------------------------


class PPTDeiTEmbeddings(DeiTEmbeddings):
    """DeiT embeddings whose DIST token is optional.

    Differences from `DeiTEmbeddings`:
    - no DIST token without `config.use_distillation_token`: then the position embeddings have one prefix slot
      (CLS) instead of two and the embeddings are exactly `ViTEmbeddings`';
    - `interpolate_pos_encoding` handles 1 or 2 prefix tokens;
    - no mask token (no masked image modeling), and an image of the wrong size gets a message naming the fix.
    """

    def __init__(self, config: PPTDeiTConfig) -> None:
        super().__init__(config, use_mask_token=False)
        self.num_prefix_tokens = config.num_protected_tokens
        if not config.use_distillation_token:
            self.distillation_token = None
            num_positions = self.patch_embeddings.num_patches + 1
            self.position_embeddings = nn.Parameter(torch.zeros(1, num_positions, config.hidden_size))

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Bicubic resize of the patch position embeddings to a `height` x `width` image (as DeiT/ViT/DINO do),
        for 1 or 2 prefix tokens."""
        prefix = self.num_prefix_tokens
        num_patches = embeddings.shape[1] - prefix
        num_positions = self.position_embeddings.shape[1] - prefix
        if not torch.jit.is_tracing() and num_patches == num_positions and height == width:
            return self.position_embeddings
        prefix_pos_embed = self.position_embeddings[:, :prefix]
        patch_pos_embed = self.position_embeddings[:, prefix:]
        dim = embeddings.shape[-1]
        side = int(num_positions**0.5)
        patch_pos_embed = patch_pos_embed.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed,
            size=(height // self.patch_size, width // self.patch_size),
            mode="bicubic",
            align_corners=False,
        )
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((prefix_pos_embed, patch_pos_embed), dim=1)

    def forward(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        _, _, height, width = pixel_values.shape
        if not interpolate_pos_encoding and (height, width) != tuple(self.image_size):
            raise ValueError(
                f"Input image size ({height}*{width}) doesn't match model ({self.image_size[0]}*{self.image_size[1]})"
                "; resize the images (the model's image processor does) or pass interpolate_pos_encoding=True."
            )
        embeddings = self.patch_embeddings(pixel_values)
        batch_size = embeddings.shape[0]
        prefix = [self.cls_token.expand(batch_size, -1, -1)]
        if self.distillation_token is not None:
            prefix.append(self.distillation_token.expand(batch_size, -1, -1))
        embeddings = torch.cat((*prefix, embeddings), dim=1)
        if interpolate_pos_encoding:
            embeddings = embeddings + self.interpolate_pos_encoding(embeddings, height, width)
        else:
            embeddings = embeddings + self.position_embeddings
        return self.dropout(embeddings)


class PPTAttentionOutput(NamedTuple):
    output: torch.Tensor  # [B, N, D]
    probs: torch.Tensor | None  # [B, H, N, N], only when asked for
    cls_attention: torch.Tensor | None  # [B, H, N], only when asked for
    key_mean: torch.Tensor | None  # [B, N, head_dim], pooling metric
    value_norm: torch.Tensor | None  # [B, N]


class PPTDeiTAttention(DeiTAttention):
    """DeiT attention with an optional additive per-key bias (log token sizes) and the statistics PPT scores need.

    Full probabilities are materialised only when `need_probs` (or the config asks for `eager` attention);
    otherwise the output goes through `scaled_dot_product_attention` and, for the scores, only the CLS query row
    `softmax(q_cls K^T / sqrt(d) + log s)` is computed: `[B, H, 1, N]` instead of `[B, H, N, N]`.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        key_bias: torch.Tensor | None = None,
        need_stats: bool = False,
        need_probs: bool = False,
    ) -> PPTAttentionOutput:
        batch_size, num_tokens, _ = hidden_states.shape
        head_shape = (batch_size, num_tokens, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(head_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(head_shape).transpose(1, 2)
        value_rows = self.v_proj(hidden_states)  # [B, N, H * head_dim]: a token's values of all heads, concatenated
        value = value_rows.view(head_shape).transpose(1, 2)
        mask = None if key_bias is None else key_bias[:, None, None, :].to(query.dtype)
        dropout = self.attention_dropout if self.training else 0.0

        probs = cls_attention = None
        if need_probs or self.config._attn_implementation == "eager":
            logits = torch.matmul(query, key.transpose(2, 3)) * self.scaling
            if mask is not None:
                logits = logits + mask
            probs = nn.functional.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
            context = torch.matmul(nn.functional.dropout(probs, p=dropout, training=self.training), value)
            cls_attention = probs[:, :, 0]
        else:
            context = nn.functional.scaled_dot_product_attention(
                query, key, value, attn_mask=mask, dropout_p=dropout, scale=self.scaling
            )
            if need_stats:
                cls_logits = torch.matmul(query[:, :, :1], key.transpose(2, 3)) * self.scaling
                if mask is not None:
                    cls_logits = cls_logits + mask
                cls_attention = nn.functional.softmax(cls_logits, dim=-1, dtype=torch.float32)[:, :, 0]
                cls_attention = cls_attention.to(query.dtype)

        output = self.o_proj(context.transpose(1, 2).reshape(batch_size, num_tokens, -1))
        if not need_stats:
            return PPTAttentionOutput(output, probs, None, None, None)
        return PPTAttentionOutput(output, probs, cls_attention, key.mean(dim=1), value_rows.norm(dim=-1))


class TokenState(NamedTuple):
    """What travels with the tokens between layers. `sizes` is None until the first compression (all ones)."""

    sizes: torch.Tensor | None  # [B, N]
    sources: torch.Tensor | None  # [B, N, N0]


class PPTLayerSchedule(NamedTuple):
    """One layer's PPT settings for one forward pass.

    `PPTDeiTModel` reads them from the config once, when the pass starts (`compression_schedule`), and hands them to
    its layers, which never read PPT settings from the config: a `configure_compression` during a pass (from another
    thread, or from a score function) takes effect at the next pass instead of mixing two schedules within one.
    The defaults are a layer that does not compress.
    """

    layer_index: int | None = None
    tokens_removed: int = 0  # the configured r (0: no compression here), before the run-time clamp
    prune_threshold: float = 0.0
    score_function: ScoreFunction | None = None  # resolved from the registry when the pass starts
    proportional_attention: bool = True
    num_protected: int = 1


class PPTDeiTLayerOutput(NamedTuple):
    """What a `PPTDeiTLayer` returns. Element 0 is the hidden states, as transformers' output capturing expects of a
    layer (`_can_record_outputs["hidden_states"]`)."""

    hidden_states: torch.Tensor  # [B, N_out, D], N_out = N_in - r at a reduction layer, N_in elsewhere
    tokens: TokenState  # sizes and sources of those N_out tokens
    compression: PPTCompressionRecord | None  # with output_compression, at a layer scheduled to compress (r > 0)


class PPTDeiTLayer(DeiTLayer):
    """`x = x + Attn(LN1(x))`, then (at reduction layers) `x = compress(x)`, then `x = x + MLP(LN2(x))`.

    Differences from `DeiTLayer`:
    - the compression step between the attention residual and the MLP, at layers whose `schedule` removes tokens;
    - it takes the token state (sizes, sources) and this pass's `PPTLayerSchedule` instead of an attention mask, and
      returns a `PPTDeiTLayerOutput` (hidden states, token state, and with `output_compression` the compression
      record) instead of a tensor;
    - `PPTDeiTAttention`, with the log-size bias once tokens have been merged and the statistics the step needs.
    """

    def __init__(self, config: PPTDeiTConfig):
        super().__init__(config)
        self.attention = PPTDeiTAttention(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        tokens: TokenState | None = None,
        schedule: PPTLayerSchedule = PPTLayerSchedule(),
        output_attentions: bool = False,
        output_compression: bool = False,
    ) -> PPTDeiTLayerOutput:
        tokens = TokenState(None, None) if tokens is None else tokens
        num_protected = schedule.num_protected
        r = clamp_tokens_removed(schedule.tokens_removed, hidden_states.shape[1], num_protected)
        score_fn = schedule.score_function if r > 0 else None
        use_log_sizes = schedule.proportional_attention and tokens.sizes is not None
        attention = self.attention(
            self.layernorm_before(hidden_states),
            key_bias=tokens.sizes.log() if use_log_sizes else None,
            need_stats=r > 0,
            need_probs=output_attentions or (score_fn is not None and score_fn.needs_full_attention),
        )
        hidden_states = self.dropout(attention.output) + hidden_states

        hidden_states, tokens, record = self.compression_step(
            hidden_states, attention, tokens, schedule, output_compression
        )
        residual = hidden_states
        hidden_states = self.dropout(self.mlp(self.layernorm_after(hidden_states))) + residual
        return PPTDeiTLayerOutput(hidden_states, tokens, record)

    def compression_step(
        self,
        hidden_states: torch.Tensor,
        attention: PPTAttentionOutput,
        tokens: TokenState | None = None,
        schedule: PPTLayerSchedule = PPTLayerSchedule(),
        output_compression: bool = False,
    ) -> tuple[torch.Tensor, TokenState, PPTCompressionRecord | None]:
        """The layer's compression step alone (scores, policy, prune or pool), as `forward` runs it between the
        attention residual and the MLP: public so that it can be timed or studied apart from the layer.

        Args:
            hidden_states: `[B, N, D]` tokens after the attention residual.
            attention: this layer's attention on those tokens, computed with `need_stats=True` (and `need_probs=True`
                when `schedule.score_function.needs_full_attention`).
            tokens: sizes `[B, N]` and sources `[B, N, N0]` of the tokens (None: original patches, sizes of 1).
            schedule: this layer's settings, e.g. `model.deit.compression_schedule()[layer_index]`.
            output_compression: also return the `PPTCompressionRecord` of a scheduled layer.

        Returns:
            `[B, N - r, D]` hidden states (`r` the scheduled `tokens_removed`, clamped to the tokens there are), their
            token state, and the record (None unless `output_compression` at a scheduled layer).
        """
        tokens = TokenState(None, None) if tokens is None else tokens
        num_protected = schedule.num_protected
        r = clamp_tokens_removed(schedule.tokens_removed, hidden_states.shape[1], num_protected)
        record = None
        tokens_before = hidden_states.shape[1]
        if r > 0:
            inputs = ScoreInputs(attention.cls_attention, attention.value_norm, num_protected, attention.probs)
            scores = compute_scores(schedule.score_function, inputs)
            sizes = tokens.sizes
            if sizes is None:
                sizes = hidden_states.new_ones(hidden_states.shape[:2])
            result = compress(
                hidden_states,
                sizes,
                scores,
                attention.key_mean,
                r,
                schedule.prune_threshold,
                num_protected,
                tokens.sources,
            )
            hidden_states, tokens = result.hidden_states, TokenState(result.sizes, result.sources)
            if output_compression:
                record = PPTCompressionRecord(
                    scores=scores,
                    score_variance=result.score_variance,
                    pruned=result.pruned,
                    layer_index=schedule.layer_index,
                    tokens_before=tokens_before,
                    tokens_after=hidden_states.shape[1],
                    token_sizes=result.sizes,
                    token_sources=result.sources,
                )
        elif schedule.tokens_removed > 0 and output_compression:
            # A scheduled layer whose r the clamp brought to 0 (too few tokens left): it still gets a record, with
            # no scores or policy, so that records and `reduction_layers` correspond one to one.
            sizes = tokens.sizes if tokens.sizes is not None else hidden_states.new_ones(hidden_states.shape[:2])
            record = PPTCompressionRecord(
                layer_index=schedule.layer_index,
                tokens_before=tokens_before,
                tokens_after=tokens_before,
                token_sizes=sizes,
                token_sources=tokens.sources,
            )
        return hidden_states, tokens, record


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


class PPTDeiTPreTrainedModel(DeiTPreTrainedModel):
    """Base class of the PPT-DeiT models.

    Differences from `DeiTPreTrainedModel`:
    - `config_class` is `PPTDeiTConfig`; `_no_split_modules`, `_can_record_outputs` name the PPT modules;
    - no flash / flex attention and no attention-backend registry (see the comment at the flags);
    - `_init_weights` draws position embeddings and CLS/DIST from a truncated normal, as ViT does (stock DeiT zeroes
      them);
    - `from_pretrained` loads stock DeiT/ViT Hub checkpoints through `CHECKPOINT_KEY_MAPPING`, and
      `save_pretrained` writes an `auto_map` for all three Auto classes;
    - `configure_compression` / `compression_settings` change the PPT settings of a built model.
    """

    config_class = PPTDeiTConfig
    config: PPTDeiTConfig
    base_model_prefix = "deit"
    _no_split_modules = ["PPTDeiTEmbeddings", "PPTDeiTLayer"]
    _supports_sdpa = True
    # Proportional attention adds log(size) of each key token to the attention logits, a float bias per (sample, key)
    # that changes after every pooling step. Flash attention kernels take no additive bias (only a 0/1 padding mask),
    # so they cannot compute it; and the compression step needs the softmax statistics of the CLS query row under that
    # same bias, which PPTDeiTAttention computes next to `scaled_dot_product_attention` (or from the eager
    # probabilities) rather than through `ALL_ATTENTION_FUNCTIONS`. Flex attention could express the bias as a
    # score_mod, but its backward and compile requirements are untested here. So only eager and SDPA are offered, and
    # the attention does not go through the registry of attention backends.
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = False
    # Hidden states are each layer's output[0] (their length shrinks after each reduction layer), attentions the
    # attention module's output[1] (`probs`, materialised only when attentions are asked for); both are collected by
    # transformers' `capture_outputs` hooks. Compression records are not hooks' business: the model loop gathers them.
    _can_record_outputs = {"hidden_states": PPTDeiTLayer, "attentions": PPTDeiTAttention}

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, PPTDeiTEmbeddings):
            std = self.config.initializer_range
            # ViT/DeiT from-scratch init: truncated normal position embeddings and CLS/DIST tokens.
            for parameter in (module.position_embeddings, module.cls_token, module.distillation_token):
                if parameter is not None:
                    init.trunc_normal_(parameter, mean=0.0, std=std)
            return
        super()._init_weights(module)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, that also loads stock DeiT and ViT checkpoints as they are on the Hub
        (old or new key names, `vit.` or `deit.` prefix: `key_mapping` defaults to `CHECKPOINT_KEY_MAPPING`), with PPT
        settings as keyword arguments.

        Weight shapes are checked as usual: a checkpoint whose weights do not fit the config (another `num_labels`,
        `image_size`, ...) raises, unless `ignore_mismatched_sizes=True`, which re-initialises the mismatched weights.
        Fine-tuning for another label set is thus:

            PPTDeiTForImageClassification.from_pretrained("facebook/deit-small-patch16-224", num_labels=100,
                                                          ignore_mismatched_sizes=True, tokens_removed=50)
        """
        kwargs.setdefault("key_mapping", CHECKPOINT_KEY_MAPPING)
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        except Exception as error:
            # safetensors' own error names no file ("incomplete metadata, file not fully covered"). Matched by name:
            # the shipped code imports torch and transformers only.
            if type(error).__name__ != "SafetensorError":
                raise
            raise OSError(f"a weights file of {str(pretrained_model_name_or_path)!r} cannot be read by safetensors "
                          f"({error}): it is damaged or was not fully written; save or download it again (the file: "
                          f"{SAFE_WEIGHTS_NAME}, or a shard its {SAFE_WEIGHTS_INDEX_NAME} lists)") from error

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained` (safetensors, with the remote-code files), with `auto_map` naming all
        three Auto classes whichever class saved it, so `AutoModel` and `AutoModelForImageClassification` both
        load the folder with `trust_remote_code=True`."""
        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        for auto_class, cls in (
            ("AutoConfig", PPTDeiTConfig),
            ("AutoModel", PPTDeiTModel),
            ("AutoModelForImageClassification", PPTDeiTForImageClassification),
        ):
            auto_map[auto_class] = f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}"
        self.config.auto_map = auto_map
        return super().save_pretrained(save_directory, *args, **kwargs)

    def configure_compression(self, **settings) -> None:
        """Change the PPT settings of a built model in place, validated as the config validates them, e.g.
        `model.configure_compression(tokens_removed=30, prune_threshold=float("inf"))`.

        Safe while another thread runs the model: a forward pass reads all settings once when it starts, and they are
        replaced here in one dict update, so a pass runs entirely with the old or entirely with the new settings.
        """
        checked = self.config.with_compression(**settings)  # raises ValueError on bad settings
        # One update of the attribute dict (atomic under the GIL) rather than a setattr per setting; the values are
        # validated already (with_compression built a config from them).
        vars(self.config).update({name: getattr(checked, name) for name in settings})

    @contextlib.contextmanager
    def compression_settings(self, **settings):
        """`configure_compression(**settings)` for the duration of a `with` block; the previous settings come back
        on exit, also when the block raises. E.g. the uncompressed baseline with the same weights:

            with model.compression_settings(reduction_layers=[]):
                baseline_logits = model(pixel_values).logits
        """
        saved = {name: copy.deepcopy(getattr(self.config, name)) for name in settings}
        self.configure_compression(**settings)
        try:
            yield self
        finally:
            self.configure_compression(**saved)


class PPTDeiTModel(PPTDeiTPreTrainedModel, DeiTModel):
    """The DeiT/ViT encoder with PPT token compression.

    Input `pixel_values` `(batch_size, num_channels, height, width)`; output `last_hidden_state`
    `(batch_size, final_tokens, hidden_size)` with `[CLS, (DIST)]` first.

    Differences from `DeiTModel`:
    - `PPTDeiTEmbeddings` (optional DIST token) and `PPTDeiTLayer`s, which carry token sizes (and, with
      `config.track_sources`, source maps) from layer to layer under a schedule read once per pass
      (`compression_schedule`);
    - returns `PPTDeiTModelOutput`: also `token_sizes`, `token_sources` and, with `output_compression=True`, one
      `PPTCompressionRecord` per reduction layer; `hidden_states` / `attentions` shrink after each reduction layer;
    - no `bool_masked_pos` and no `attention_mask` (there is no padding in an image, and a mask would not follow
      the tokens through pruning and pooling); unknown keyword arguments raise a TypeError;
    - integer, boolean or complex `pixel_values` and an empty batch are refused with a clear error.
    """

    def __init__(self, config: PPTDeiTConfig, add_pooling_layer: bool = True):
        DeiTPreTrainedModel.__init__(self, config)
        self.config = config
        self.embeddings = PPTDeiTEmbeddings(config)
        self.layers = nn.ModuleList([PPTDeiTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = DeiTPooler(config) if add_pooling_layer else None
        self.post_init()

    def settings_snapshot(self) -> PPTDeiTConfig:
        """The config as it is now, read in one step: what one forward pass runs with."""
        if torch.compiler.is_compiling():
            # A compiled graph has the settings baked in as constants (guarded by dynamo): nothing to snapshot.
            return self.config
        # A shallow copy reads all attributes in one dict copy (atomic under the GIL), and configure_compression
        # replaces them in one dict update: a pass sees the old settings or the new ones, never a mix.
        return copy.copy(self.config)

    def compression_schedule(self, config: PPTDeiTConfig | None = None) -> tuple[PPTLayerSchedule, ...]:
        """Every layer's PPT settings for one forward pass, from `config` (default: a snapshot of `self.config`)."""
        config = self.settings_snapshot() if config is None else config
        # Each setting is read once (a config attribute read costs about a microsecond), not once per layer.
        removed = config.tokens_removed_per_layer()
        shared = {
            "prune_threshold": config.prune_threshold,
            "score_function": get_score_function(config.score_function),
            "proportional_attention": config.proportional_attention,
            "num_protected": config.num_protected_tokens,
        }
        return tuple(
            PPTLayerSchedule(layer_index=index, tokens_removed=removed.get(index, 0), **shared)
            for index in range(len(self.layers))
        )

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        output_compression: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> PPTDeiTModelOutput:
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`):
            Images as the model's image processor makes them (floating point, normalised).
        interpolate_pos_encoding (`bool`, *optional*):
            Resize the position embeddings to images of another size than `config.image_size`.
        output_compression (`bool`, *optional*):
            Return one `PPTCompressionRecord` per reduction layer in `compression`.
        kwargs (`TransformersKwargs`):
            `output_attentions` / `output_hidden_states` (collected by `capture_outputs`), and the other keyword
            arguments transformers passes to every model (accepted, unused here); any other name raises a TypeError.
        """
        _check_forward_kwargs(self, kwargs)
        config = self.settings_snapshot()  # the PPT settings are read here, once per pass, and nowhere else
        _check_pixel_values(pixel_values, config)
        schedule = self.compression_schedule(config)
        expected_dtype = self.embeddings.patch_embeddings.projection.weight.dtype
        if pixel_values.dtype != expected_dtype:
            pixel_values = pixel_values.to(expected_dtype)
        # The same default `capture_outputs` uses to decide whether attentions are collected.
        output_attentions = bool(kwargs.get("output_attentions", getattr(config, "output_attentions", False)))

        hidden_states = self.embeddings(pixel_values, interpolate_pos_encoding=bool(interpolate_pos_encoding))
        batch_size, num_tokens, _ = hidden_states.shape
        sources = None
        if config.track_sources:
            sources = torch.eye(num_tokens, device=hidden_states.device, dtype=hidden_states.dtype)
            sources = sources.expand(batch_size, num_tokens, num_tokens)
        tokens = TokenState(None, sources)

        records = []
        for layer, layer_schedule in zip(self.layers, schedule):
            hidden_states, tokens, record = layer(
                hidden_states, tokens, layer_schedule, output_attentions, bool(output_compression)
            )
            if record is not None:
                records.append(record)

        sequence_output = self.layernorm(hidden_states)
        sizes = tokens.sizes if tokens.sizes is not None else hidden_states.new_ones(hidden_states.shape[:2])
        return PPTDeiTModelOutput(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            token_sizes=sizes,
            token_sources=tokens.sources,
            compression=tuple(records) if output_compression else None,
        )


class PPTDeiTForImageClassification(PPTDeiTPreTrainedModel, DeiTForImageClassification):
    """PPT-DeiT with a linear head on the final CLS token (and, with `config.distillation_head`, one on DIST,
    averaged as `DeiTForImageClassificationWithTeacher` does). `logits`: `(batch_size, num_labels)`.

    Differences from `DeiTForImageClassification`:
    - a `PPTDeiTModel` inside, whose compression state (`token_sizes`, `token_sources`, `compression`) the output
      `PPTDeiTImageClassifierOutput` carries;
    - the optional distillation head (`cls_logits`, `distillation_logits`, `logits` their mean), so distilled DeiT
      checkpoints need no separate `...WithTeacher` class;
    - labels out of range raise a ValueError instead of a device-side assert in the loss.
    """

    def __init__(self, config: PPTDeiTConfig):
        DeiTPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.deit = PPTDeiTModel(config, add_pooling_layer=False)
        self.classifier = self._make_head()
        self.distillation_classifier = self._make_head() if config.distillation_head else None
        self.post_init()

    def _make_head(self) -> nn.Module:
        if self.config.num_labels > 0:
            return nn.Linear(self.config.hidden_size, self.config.num_labels)
        return nn.Identity()

    @can_return_tuple
    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        interpolate_pos_encoding: bool | None = None,
        output_compression: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> PPTDeiTImageClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices in `[0, num_labels)` for the loss (or float targets for regression / multi-label problems).
        kwargs (`TransformersKwargs`):
            As for `PPTDeiTModel.forward`; loss keyword arguments (`num_items_in_batch`, which `Trainer` passes with
            gradient accumulation) go to `self.loss_function`.

        The other arguments are those of `PPTDeiTModel.forward`.
        """
        _check_forward_kwargs(self, kwargs)
        outputs = self.deit(
            pixel_values,
            interpolate_pos_encoding=interpolate_pos_encoding,
            output_compression=output_compression,
            **kwargs,
        )
        sequence_output = outputs.last_hidden_state
        cls_logits = self.classifier(sequence_output[:, 0])
        distillation_logits = None
        logits = cls_logits
        if self.distillation_classifier is not None:
            distillation_logits = self.distillation_classifier(sequence_output[:, 1])
            logits = (cls_logits + distillation_logits) / 2

        loss = None
        if labels is not None:
            _check_labels(labels, self.config)
            loss = self.loss_function(labels, logits, self.config, **kwargs)
        return PPTDeiTImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cls_logits=cls_logits if distillation_logits is not None else None,
            distillation_logits=distillation_logits,
            token_sizes=outputs.token_sizes,
            token_sources=outputs.token_sources,
            compression=outputs.compression,
        )


# --------------------------------------------------------------------------------------------------------------------
# Input checks: clear messages before anything reaches torch's kernels
# --------------------------------------------------------------------------------------------------------------------

# The keyword arguments transformers may pass to any model's forward (`TransformersKwargs`): accepted, so that
# Trainer, pipelines and generic tooling work; loss ones reach the loss function. Anything else is a mistake (a typo
# such as `output_attention`, or an argument of another model such as `attention_mask`) and raises.
_TRANSFORMERS_KWARGS = frozenset(TransformersKwargs.__required_keys__ | TransformersKwargs.__optional_keys__)


def _check_forward_kwargs(model: nn.Module, kwargs: dict) -> None:
    unknown = sorted(set(kwargs) - _TRANSFORMERS_KWARGS)
    if unknown:
        raise TypeError(
            f"{type(model).__name__}.forward() got unexpected keyword argument(s) {unknown}; besides its own "
            f"arguments it accepts only transformers' common keyword arguments {sorted(_TRANSFORMERS_KWARGS)}"
        )


def _check_pixel_values(pixel_values, config: PPTDeiTConfig) -> None:
    if pixel_values is None:
        raise ValueError("pixel_values is required: a (batch_size, num_channels, height, width) tensor")
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
        shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
        raise ValueError(
            f"pixel_values must be a 4-d tensor (batch_size, num_channels, height, width), got {shape}; "
            "use the model's image processor to turn images into pixel_values"
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values has dtype {pixel_values.dtype}, but the model takes floating-point pixel values normalised "
            "by its image processor (raw 0-255 integer pixels give wrong predictions): use "
            "AutoImageProcessor.from_pretrained(<checkpoint>)(images, return_tensors='pt').pixel_values"
        )
    if pixel_values.shape[0] == 0:
        raise ValueError(f"pixel_values holds no image (shape {tuple(pixel_values.shape)}): pass at least one")
    if pixel_values.shape[1] != config.num_channels:
        raise ValueError(
            f"pixel_values has {pixel_values.shape[1]} channels (shape {tuple(pixel_values.shape)}) but the model "
            f"expects num_channels={config.num_channels}; convert images to RGB (e.g. PIL's image.convert('RGB'))"
        )


def _check_labels(labels: torch.Tensor, config: PPTDeiTConfig) -> None:
    # A label out of range would surface as a device-side assert deep inside cross-entropy.
    if labels.dtype in (torch.long, torch.int) and config.num_labels > 1 and labels.numel() > 0:
        if not torch.compiler.is_compiling():
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= config.num_labels:
                raise ValueError(f"labels must be in [0, {config.num_labels - 1}], got values in [{low}, {high}]")


PPTDeiTModel.register_for_auto_class("AutoModel")
PPTDeiTForImageClassification.register_for_auto_class("AutoModelForImageClassification")

__all__ = [
    "CHECKPOINT_KEY_MAPPING",
    "PPTCompressionRecord",
    "PPTDeiTForImageClassification",
    "PPTDeiTImageClassifierOutput",
    "PPTDeiTLayerOutput",
    "PPTDeiTModel",
    "PPTDeiTModelOutput",
    "PPTDeiTPreTrainedModel",
    "PPTLayerSchedule",
]
