# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Top-1 and top-k accuracy as an `evaluate` module that loads offline:

    metric = evaluate.load("ppt_training/metrics/topk_accuracy.py")   # or TopKAccuracy() directly
    metric.compute(predictions=[[3, 1, 7], [0, 2, 5]], references=[1, 0])
    # {'accuracy': 0.5, 'top3_accuracy': 1.0}

`predictions` are class ids ranked best first, one row per sample (`[batch_size, k]`); a plain class id per sample
(`[batch_size]`) is accepted too and gives top-1 accuracy only. The Hub's `evaluate.load("accuracy")` computes the
same top-1 figure but needs the network.
"""

import datasets
import evaluate
import numpy as np


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
