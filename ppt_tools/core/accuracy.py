# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Top-1 / top-k accuracy: one `evaluate` metric, used by train.py (through `Trainer`), benchmark.py and the
analysis tools.

    metric = TopKAccuracy()
    metric.compute(predictions=[[3, 1, 7], [0, 2, 5]], references=[1, 0])   # {'accuracy': 0.5, 'top3_accuracy': 1.0}

`predictions` are class ids ranked best first, one row per sample (`[num_samples, k]`); a plain class id per sample
is accepted too and gives top-1 only. The Hub's `evaluate.load("accuracy")` computes the same top-1 figure but needs
the network; this one is a local `evaluate.Metric` and loads nowhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import datasets
import evaluate
import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from datasets.distributed import split_dataset_by_node
from tqdm.auto import tqdm

from .data import check_labels


_DESCRIPTION = """Fraction of samples whose label is the first of the ranked predictions (accuracy), and, when
each prediction is a ranked list of k > 1 class ids, the fraction whose label is among them (topk_accuracy)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]` of shape `(num_samples, k)` or `list[int]` of shape `(num_samples,)`):
        Predicted class ids, best first.
    references (`list[int]` of shape `(num_samples,)`): true class ids.
Returns:
    accuracy (`float`): top-1 accuracy in [0, 1].
    top{k}_accuracy (`float`): top-k accuracy in [0, 1], only when k > 1.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
                ),
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            ],
        )

    def _compute(self, predictions, references):
        references = np.asarray(references, dtype=np.int64)
        if len(references) == 0:
            raise ValueError("TopKAccuracy needs at least one prediction")
        ranked = np.asarray(predictions, dtype=np.int64)
        if ranked.ndim == 1:
            ranked = ranked[:, None]
        hits = ranked == references[:, None]
        results = {"accuracy": float(hits[:, 0].mean())}
        k = ranked.shape[1]
        if k > 1:
            results[f"top{k}_accuracy"] = float(hits.any(axis=1).mean())
        return results


def top_k_for(num_labels: int) -> int:
    """The k reported besides top-1: 5, for models with more than 5 classes (else top-1 only)."""
    return 5 if num_labels > 5 else 1


def ranked_predictions(logits: torch.Tensor, k: int) -> torch.Tensor:
    """The `k` best class ids per row, best first: `[B, C]` logits -> `[B, k]`."""
    return logits.topk(min(k, logits.shape[-1]), dim=-1).indices


@dataclass
class AccuracyResult:
    top1: float
    top5: float | None  # None when the model has 5 classes or fewer
    num_samples: int

    def to_dict(self) -> dict:
        return {"top1": self.top1, "top5": self.top5, "num_samples": self.num_samples}


def accuracy_of(ranked: torch.Tensor, references: torch.Tensor) -> AccuracyResult:
    """`TopKAccuracy` of ranked predictions `[N, k]` against labels `[N]`."""
    scores = TopKAccuracy().compute(predictions=ranked.tolist(), references=references.tolist())
    return AccuracyResult(scores["accuracy"], scores.get("top5_accuracy"), int(references.numel()))


def this_process_share(dataset):
    """The rows of `dataset` (map-style or a stream) this process evaluates: all of them in a single process; under
    `accelerate launch --num_processes N` (or torchrun) a 1/N share, each row in exactly one process's share, so
    that gathering the shares counts every row once."""
    state = PartialState()
    if state.num_processes == 1:
        return dataset
    return split_dataset_by_node(dataset, rank=state.process_index, world_size=state.num_processes)


@torch.inference_mode()
def evaluate_accuracy(models: dict[str, torch.nn.Module], batches: Iterable, num_labels: int,
                      device: torch.device | str = "cpu", progress: bool = True,
                      total: int | None = None) -> dict[str, AccuracyResult]:
    """Top-1 / top-5 of several models on the same `(pixel_values, labels)` batches (each batch preprocessed once).

    With several processes, `batches` are this process's share (`this_process_share`); the predictions of all
    processes are gathered, so every process returns the accuracy over the whole split. Labels outside the
    `num_labels` classes are an error (`check_labels`), found batch by batch. `total`: the images expected (in this
    process), for the progress bar, when known.
    """
    k = top_k_for(num_labels)
    ranked: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    references = []
    with tqdm(total=total, unit="img", desc="accuracy", disable=not progress, leave=False) as bar:
        for pixel_values, labels in batches:
            check_labels(labels, num_labels, "the evaluation split")
            references.append(labels.reshape(-1).cpu())
            for name, model in models.items():
                dtype = next(model.parameters()).dtype
                logits = model(pixel_values.to(device=device, dtype=dtype)).logits
                ranked[name].append(ranked_predictions(logits.float(), k).cpu())
            bar.update(labels.numel())
    labels = _all_processes(references, torch.zeros(0, dtype=torch.long))
    if labels.numel() == 0:
        raise ValueError("the evaluation split is empty")
    return {name: accuracy_of(_all_processes(parts, torch.zeros(0, k, dtype=torch.long)), labels)
            for name, parts in ranked.items()}


def _all_processes(parts: list[torch.Tensor], empty: torch.Tensor) -> torch.Tensor:
    """This process's tensors concatenated, and, with several processes, those of all processes after it in
    process order (an empty share contributes nothing)."""
    local = torch.cat(parts) if parts else empty
    if PartialState().num_processes == 1:
        return local
    return torch.cat(gather_object([local]))


__all__ = ["AccuracyResult", "TopKAccuracy", "accuracy_of", "evaluate_accuracy", "ranked_predictions",
           "this_process_share", "top_k_for"]
