# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""PPT-DeiT configuration: a `DeiTConfig` plus the token Pruning & Pooling schedule."""

import math
import re

import transformers
from huggingface_hub.dataclasses import strict
from transformers import DeiTConfig

from .token_ops import SCORE_FUNCTIONS, clamp_tokens_removed, get_score_function


# The DeiT internals we subclass (`q_proj`..., `DeiTModel.layers`, strict configs) are those of transformers 5.9+.
# (The project as a whole, with its training and Hub tools, asks for 5.18+: see pyproject.toml.) The fields' types are
# checked by `@strict`, which needs real annotations (no `from __future__ import annotations` in this module); it
# refuses a bool where an int is expected from huggingface_hub 1.9 on.
SUPPORTED_TRANSFORMERS = ((5, 9), (6, 0))


def _check_transformers_version(version: str = transformers.__version__) -> None:
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    low, high = SUPPORTED_TRANSFORMERS
    if not low <= found < high:
        raise ImportError(
            f"PPT-DeiT needs transformers>={low[0]}.{low[1]},<{high[0]}.{high[1]} (it subclasses DeiT's internals, "
            f"which changed in 5.9); found transformers {version}. Run: pip install 'transformers>=5.9,<6'"
        )


_check_transformers_version()

# Stock model types whose checkpoints load directly into PPT-DeiT (see `PPTDeiTConfig.from_dict`).
COMPATIBLE_MODEL_TYPES = ("vit", "deit")

# Upper bounds of the sizes a config may ask for: generous (ViT-22B has 48 layers of width 6144 and MLP 24576;
# DINOv2-giant 1369 patches at 518 px), but a config.json asking for more is refused before anything is allocated.
SIZE_BOUNDS = {
    "num_hidden_layers": 256,
    "hidden_size": 16_384,
    "num_attention_heads": 256,
    "intermediate_size": 65_536,
    "num_channels": 64,
    "image_size": 8_192,
    "patch_size": 1_024,
}
PAIR_FIELDS = ("image_size", "patch_size")
MAX_PATCHES = 65_536
MAX_LABELS = 1_000_000

# The compression schedule proper: what `compression_defaults` returns and what tools sweep over.
SCHEDULE_SETTINGS = ("reduction_layers", "tokens_removed", "prune_threshold", "score_function")
PPT_SETTINGS = (
    *SCHEDULE_SETTINGS,
    "proportional_attention",
    "use_distillation_token",
    "distillation_head",
    "track_sources",
)


@strict
class PPTDeiTConfig(DeiTConfig):
    r"""
    Configuration of a DeiT / ViT classifier with token Pruning & Pooling (PPT, arXiv 2310.01812). All `DeiTConfig`
    arguments are accepted; the PPT defaults are the authors' DeiT-S setting (r = 50 at layers 3, 6 and 9,
    tau = 7e-5, `ats` scores: 197 -> 147 -> 97 -> 49 tokens at 224 px).

    Differences from `DeiTConfig`:
    - the PPT settings below. Every field is checked at construction (also through `from_pretrained` keyword
      arguments and `config.json`): a value of the wrong type raises huggingface_hub's
      `StrictDataclassFieldValidationError` (as in every transformers config), a value out of range a `ValueError`,
      both naming the setting and what it accepts;
    - sizes are bounded (`SIZE_BOUNDS`, `MAX_PATCHES`, `MAX_LABELS`) and `image_size` must hold at least one
      patch. (That `hidden_size` divides into `num_attention_heads` is checked where the attention is built, as in
      stock transformers, whose common config tests build configs field by field.)
    - a stock `vit` or `deit` config (a Hub checkpoint's `config.json`) is adopted as a PPT-DeiT one, see `from_dict`.

    Args:
        reduction_layers (`list[int]`, defaults to `(3, 6, 9)`):
            0-based indices of the layers that compress tokens (between their attention and their MLP).
            Empty: no compression, the model is the stock DeiT/ViT.
        tokens_removed (`int` or `list[int]`, defaults to 50):
            Tokens removed per sample at each reduction layer: one int for all of them or one per layer. At run time
            it is clamped to half the non-protected tokens present.
        prune_threshold (`float`, defaults to 7e-5):
            tau. A sample whose score variance is >= tau is pruned at that layer, otherwise pooled. `0` always
            prunes (top-k, as ATS/EViT); `float("inf")` always pools (as ToMe).
        score_function (`str`, defaults to `"ats"`):
            Name of a registered significance score: `"ats"`, `"cls_attention"`, `"entropy"`, or one added with
            `register_score_function`.
        proportional_attention (`bool`, defaults to `True`):
            Add `log(size)` of each key token to the attention logits once tokens have been merged.
        use_distillation_token (`bool`, defaults to `False`):
            The sequence holds a DIST token after CLS (distilled DeiT checkpoints). Set automatically when loading
            a `deit` checkpoint; `vit` checkpoints (the non-distilled DeiTs on the Hub) have none.
        distillation_head (`bool`, defaults to `False`):
            The classifier also has a head on the DIST token and averages both (`DeiTForImageClassificationWithTeacher`
            checkpoints).
        track_sources (`bool`, defaults to `False`):
            Keep, per output token, a 0/1 map of the input tokens it covers (`[B, N_out, N_in]`), for visualisation.
    """

    model_type = "ppt_deit"

    reduction_layers: list[int] | tuple[int, ...] = (3, 6, 9)
    tokens_removed: int | list[int] | tuple[int, ...] = 50
    prune_threshold: float | int = 7e-5
    score_function: str = "ats"
    proportional_attention: bool = True
    use_distillation_token: bool = False
    distillation_head: bool = False
    track_sources: bool = False

    def __post_init__(self, **kwargs):
        # The base class turns a bare `num_labels` into an id2label of that many entries: bound it first (a config.json
        # asking for 10**8 classes would otherwise fill the memory before any check runs).
        labels = kwargs.get("num_labels")
        if isinstance(labels, int) and not isinstance(labels, bool) and labels > MAX_LABELS:
            raise ValueError(f"num_labels={labels} is not valid: at most {MAX_LABELS:,} classes")
        super().__post_init__(**kwargs)
        self.reduction_layers = list(self.reduction_layers)
        if not isinstance(self.tokens_removed, int):
            self.tokens_removed = list(self.tokens_removed)
        self.prune_threshold = float(self.prune_threshold)
        self._check_all()

    def _check_sizes(self) -> None:
        # `@strict` has checked the types (a field set to a value of another type raises
        # `StrictDataclassFieldValidationError` naming it); what remains are the values. The bounds refuse a
        # config.json that would allocate until memory runs out, before any weight is created.
        for name, bound in SIZE_BOUNDS.items():
            value = getattr(self, name)
            for side in value if isinstance(value, (list, tuple)) else [value]:
                if not 0 < side <= bound:
                    raise ValueError(f"{name}={_short(value)} is not valid: {name} must be a positive int "
                                     f"{'(or a (height, width) pair of them) ' if name in PAIR_FIELDS else ''}"
                                     f"<= {bound:,}")
        for name in PAIR_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and len(value) != 2:
                raise ValueError(f"{name}={_short(value)} is not valid: {name} must be a positive int, or a "
                                 "(height, width) pair of them")
        if self.num_labels > MAX_LABELS:
            raise ValueError(f"num_labels={self.num_labels} is not valid: at most {MAX_LABELS:,} classes")
        if self.num_patches_for() == 0:
            raise ValueError(f"image_size={self.image_size!r} is smaller than patch_size={self.patch_size!r}: the "
                             "image must hold at least one patch")
        if self.num_patches_for() > MAX_PATCHES:
            raise ValueError(f"image_size={self.image_size!r} with patch_size={self.patch_size!r} gives "
                             f"{self.num_patches_for():,} patches; at most {MAX_PATCHES:,}")

    def _check_ppt_settings(self) -> None:
        layers = self.reduction_layers
        for layer in layers:
            if not 0 <= layer < self.num_hidden_layers:
                raise ValueError(
                    f"reduction_layers contains {layer!r}: each must be a layer index in "
                    f"[0, {self.num_hidden_layers - 1}] (num_hidden_layers={self.num_hidden_layers})"
                )
        if len(set(layers)) != len(layers):
            raise ValueError(f"reduction_layers={_short(layers)} lists a layer twice")
        per_layer = self.tokens_removed
        if layers and isinstance(per_layer, list) and len(per_layer) != len(layers):
            raise ValueError(
                f"tokens_removed={_short(per_layer)} has {len(per_layer)} entries but reduction_layers="
                f"{_short(layers)} has {len(layers)}: give one int for all layers or one per reduction layer"
            )
        first_clamp = clamp_tokens_removed(10**9, self.num_initial_tokens, self.num_protected_tokens)
        for r in per_layer if isinstance(per_layer, list) else [per_layer]:
            if r < 0:
                raise ValueError(f"tokens_removed contains {r!r}: must be an int >= 0")
            if layers and r > first_clamp:
                raise ValueError(
                    f"tokens_removed={r} is too large: one step removes at most half of the "
                    f"{self.num_initial_tokens - self.num_protected_tokens} non-protected tokens, i.e. {first_clamp}"
                )
        if math.isnan(self.prune_threshold) or self.prune_threshold < 0:
            raise ValueError(
                f"prune_threshold={self.prune_threshold} must be >= 0 (0 = always prune, inf = always pool)"
            )
        if self.score_function not in SCORE_FUNCTIONS:
            get_score_function(self.score_function)  # raises ValueError listing the registered names
        if self.distillation_head and not self.use_distillation_token:
            raise ValueError("distillation_head=True needs use_distillation_token=True")

    # ---- derived quantities -----------------------------------------------------------------------------------

    @property
    def num_protected_tokens(self) -> int:
        """CLS, plus DIST for distilled checkpoints: never pruned, never merged, always first."""
        return 2 if self.use_distillation_token else 1

    def num_patches_for(self, image_size=None) -> int:
        size = self.image_size if image_size is None else image_size
        height, width = (size, size) if isinstance(size, int) else size
        patch_h, patch_w = (
            (self.patch_size, self.patch_size) if isinstance(self.patch_size, int) else self.patch_size
        )
        return (height // patch_h) * (width // patch_w)

    @property
    def num_initial_tokens(self) -> int:
        return self.num_patches_for() + self.num_protected_tokens

    def tokens_removed_per_layer(self) -> dict[int, int]:
        """The configured r of each reduction layer, `{layer_index: r}`, before the run-time clamp."""
        layers, removed = self.reduction_layers, self.tokens_removed
        return dict(zip(layers, [removed] * len(layers) if isinstance(removed, int) else removed))

    def tokens_removed_at(self, layer_index: int) -> int:
        """The configured r of a layer (0 for layers that do not compress), before the run-time clamp."""
        return self.tokens_removed_per_layer().get(layer_index, 0)

    def token_schedule(self, image_size=None) -> list[tuple[int, int]]:
        """Per layer, `(tokens in attention, tokens in the MLP)` for one image of `image_size` (default: config)."""
        tokens = self.num_patches_for(image_size) + self.num_protected_tokens
        schedule = []
        for layer in range(self.num_hidden_layers):
            after = tokens - clamp_tokens_removed(self.tokens_removed_at(layer), tokens, self.num_protected_tokens)
            schedule.append((tokens, after))
            tokens = after
        return schedule

    @property
    def compression_enabled(self) -> bool:
        return any(self.tokens_removed_at(layer) > 0 for layer in self.reduction_layers)

    # ---- the compression schedule as a value -------------------------------------------------------------------

    @classmethod
    def compression_defaults(cls) -> dict:
        """The schedule settings a new config gets: the authors' DeiT-S setting (r = 50 at layers 3, 6, 9,
        tau = 7e-5, `ats`). The one place these numbers live; tools that need "the default PPT" ask here."""
        defaults = {name: getattr(cls, name) for name in SCHEDULE_SETTINGS}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in defaults.items()}

    def with_compression(self, **settings) -> "PPTDeiTConfig":
        """A validated copy of this config with the PPT `settings` changed; this config is left as it is.

        Raises `ValueError` naming the bad setting (unknown names, a layer out of range, ...), so it doubles as the
        validator of settings that are not applied yet. Settings that change the weights' layout
        (`use_distillation_token`, `distillation_head`) are refused: those need another model.
        """
        unknown = sorted(set(settings) - set(PPT_SETTINGS))
        if unknown:
            raise ValueError(f"unknown PPT settings {unknown}; known: {list(PPT_SETTINGS)}")
        structural = sorted({"use_distillation_token", "distillation_head"} & set(settings))
        if structural:
            raise ValueError(f"{structural} change the weights' layout: load a new model instead")
        merged = {**self.to_dict(), **settings}
        merged.pop("model_type", None)
        merged.pop("transformers_version", None)
        return self.__class__(**merged)

    # ---- loading stock checkpoints --------------------------------------------------------------------------

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        # Adopt stock configs here, before `from_pretrained` compares model types and warns about a mismatch.
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        _check_is_object(config_dict, f"the config.json of {pretrained_model_name_or_path!r}")
        return _adopt_stock_config(config_dict), kwargs

    @classmethod
    def _dict_from_json_file(cls, json_file):
        # transformers reads config.json here and then looks keys up in it: a file holding a JSON list, number or
        # null would fail there with a bare TypeError.
        config_dict = super()._dict_from_json_file(json_file)
        _check_is_object(config_dict, str(json_file))
        return config_dict

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        """Also accepts the config of a stock `vit` or `deit` checkpoint: a `deit` one has a DIST token (and a
        distillation head when saved as `DeiTForImageClassificationWithTeacher`), a `vit` one has neither."""
        _check_is_object(config_dict, "config_dict")
        config_dict = _adopt_stock_config(config_dict)
        # from_dict would setattr these after construction, skipping validation: hand them to the constructor.
        for name in PPT_SETTINGS:
            if name in kwargs:
                config_dict[name] = kwargs.pop(name)
        config = super().from_dict(config_dict, **kwargs)
        # Other keyword arguments (`patch_size`, `num_hidden_layers`, ...) were set after construction: check again.
        (config[0] if isinstance(config, tuple) else config)._check_all()
        return config

    def _check_all(self) -> None:
        self._check_sizes()
        self._check_ppt_settings()


def _short(value, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: messages name a bad value without repeating a huge one."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 25]}... ({len(text):,} characters)"


def _check_is_object(config_dict, what: str) -> None:
    if not isinstance(config_dict, dict):
        raise ValueError(
            f"{what} must be a JSON object (a mapping of setting names to values), got a JSON "
            f"{type(config_dict).__name__}"
        )


def _adopt_stock_config(config_dict: dict) -> dict:
    """A copy of `config_dict` in which a stock `vit`/`deit` config becomes a PPT-DeiT one."""
    config_dict = dict(config_dict)
    source_type = config_dict.get("model_type")
    if source_type in COMPATIBLE_MODEL_TYPES:
        del config_dict["model_type"]  # the instance must not shadow the class's "ppt_deit"
        architectures = config_dict.get("architectures") or []
        config_dict.setdefault("use_distillation_token", source_type == "deit")
        config_dict.setdefault("distillation_head", any("WithTeacher" in name for name in architectures))
    return config_dict


PPTDeiTConfig.register_for_auto_class()

__all__ = ["PPT_SETTINGS", "SCHEDULE_SETTINGS", "PPTDeiTConfig"]
