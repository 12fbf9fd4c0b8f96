# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""What the analysis commands share: their options, the model they load, the images they run it on."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ppt_tools.core.arguments import (
    DatasetArguments,
    MachineArguments,
    ModelSourceArguments,
    OutputArguments,
    PPTArguments,
    check_at_least,
)
from ppt_tools.core.data import ImageClassificationData, load_prepared
from ppt_tools.core.models import load_model
from ppt_tools.core.preprocessing import eval_batches, load_image_processor


@dataclass
class AnalysisArguments(OutputArguments, DatasetArguments, MachineArguments, PPTArguments, ModelSourceArguments):
    """The model, its PPT settings, the machine, the dataset, and where results go."""

    eval_batch_size: int = field(default=64, metadata={"help": "Batch size of the evaluation passes."})
    progress: bool = field(default=True, metadata={"help": "Progress bars (--no_progress: none)."})

    def validate(self) -> None:
        check_at_least(self, 1, "eval_batch_size")


def load_placed_model(args) -> tuple[torch.nn.Module, torch.device]:
    """The model `args` names, with its PPT settings, on `--device` in `--dtype`."""
    return args.place(load_model(args, args.ppt_settings())), args.torch_device


def load_data(args, model, need_train: bool = False) -> tuple[ImageClassificationData, object]:
    """`--dataset_name`'s splits (by the split rule of `ppt_tools.core.data`) and the model's image processor."""
    if args.dataset_name is None:
        raise ValueError("this command needs images: give --dataset_name (a dataset folder, a Hub id, or digits)")
    if args.streaming:
        raise ValueError("the analysis commands run many settings on the same images, held in memory: --streaming "
                         "is for benchmark.py and train.py; use --max_eval_samples to take a part of a large split")
    data = load_prepared(args, digits_size=model.config.image_size, need_train=need_train)
    return data, load_image_processor(args.model_name_or_path, model.config.image_size)


def preprocessed(split, data: ImageClassificationData, processor, batch_size: int,
                 limit: int | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first `limit` rows of `split` (all by default) as `(pixel_values, labels)` batches, preprocessed once:
    the analyses run many settings on the same images."""
    if limit is not None:
        split = split.select(range(min(limit, len(split))))
    return list(eval_batches(split, processor, data.image_column, data.label_column, batch_size))


def noise_batches(config, num_samples: int, batch_size: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded Gaussian images: a stand-in dataset for smoke tests of the policy tools."""
    generator = torch.Generator().manual_seed(seed)
    batches, left = [], num_samples
    while left > 0:
        size = min(left, batch_size)
        pixel_values = torch.randn(size, config.num_channels, config.image_size, config.image_size, generator=generator)
        batches.append((pixel_values, torch.zeros(size, dtype=torch.long)))
        left -= size
    return batches
