# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Matplotlib figures (Agg backend, PNG): Pareto fronts of sweeps and per-layer policy statistics."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display
import matplotlib.pyplot as plt  # noqa: E402


def _save_png(figure, path: str) -> str:
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)
    return path


def pareto_front(points: list[tuple[float, float]], lower_x_is_better: bool) -> list[int]:
    """Indices of the points not dominated by any other (higher y is always better), sorted by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0] if lower_x_is_better else -points[i][0], -points[i][1]))
    front, best_y = [], -float("inf")
    for index in order:
        if points[index][1] > best_y:
            front.append(index)
            best_y = points[index][1]
    return front


def pareto_plot(
    rows: list[dict],
    x_key: str,
    y_key: str,
    path: str,
    x_label: str,
    y_label: str,
    lower_x_is_better: bool,
    group_key: str = "policy",
    label_key: str = "label",
    title: str | None = None,
) -> str:
    """Scatter of `rows` (dicts) by `x_key`/`y_key`, one colour per `group_key`, Pareto front drawn as a line."""
    usable = [row for row in rows if row.get(x_key) is not None and row.get(y_key) is not None]
    if not usable:
        raise ValueError(f"no rows have both {x_key!r} and {y_key!r}")
    figure, axes = plt.subplots(figsize=(7, 5), dpi=120)
    groups = sorted({str(row.get(group_key)) for row in usable})
    markers = "osD^v<>P"  # distinct shapes keep coinciding points of different policies visible
    for index, group in enumerate(groups):
        members = [row for row in usable if str(row.get(group_key)) == group]
        color = f"C{index % 10}"
        # Every other group hollow, so coinciding points of different policies stay visible. A hollow marker needs
        # an explicit edge colour: the default edge colour is the (absent) face colour, which draws nothing.
        style = {"facecolors": "none", "edgecolors": color} if index % 2 else {"color": color}
        axes.scatter([r[x_key] for r in members], [r[y_key] for r in members], label=group,
                     marker=markers[index % len(markers)], s=36, alpha=0.75, **style)
    points = [(row[x_key], row[y_key]) for row in usable]
    front = pareto_front(points, lower_x_is_better)
    for index in front:  # label only the front: the rest is legible from the table
        if usable[index].get(label_key):
            axes.annotate(str(usable[index][label_key]), points[index], fontsize=6, alpha=0.8,
                          xytext=(3, 3), textcoords="offset points")
    axes.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", linewidth=1, label="Pareto front")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    if title:
        axes.set_title(title, fontsize=9)
    return _save_png(figure, path)


def policy_stats_plot(stats: list[dict], path: str, prune_threshold: float | None = None, title: str | None = None) -> str:
    """Two panels per reduction layer: mean score variance (log scale, with tau) and the fraction pruned / pooled."""
    layers = [str(entry["layer_index"]) for entry in stats]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    means = [entry["mean_score_variance"] for entry in stats]
    low = [entry["mean_score_variance"] - entry["q10_score_variance"] for entry in stats]
    high = [entry["q90_score_variance"] - entry["mean_score_variance"] for entry in stats]
    left.errorbar(layers, means, yerr=[[max(v, 0) for v in low], [max(v, 0) for v in high]], fmt="o", capsize=4,
                  label="mean (bars: 10th-90th percentile)")
    if prune_threshold is not None and 0 < prune_threshold < float("inf"):
        left.axhline(prune_threshold, color="red", linestyle="--", label=f"tau = {prune_threshold:g}")
    left.set_yscale("log")
    left.set_xlabel("reduction layer")
    left.set_ylabel("variance of normalised scores")
    left.legend(fontsize=7)
    pruned = [entry["fraction_pruned"] for entry in stats]
    right.bar(layers, pruned, label="pruned")
    right.bar(layers, [1 - p for p in pruned], bottom=pruned, label="pooled")
    right.set_ylim(0, 1)
    right.set_xlabel("reduction layer")
    right.set_ylabel("fraction of samples")
    right.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=9)
    return _save_png(figure, path)


__all__ = ["pareto_front", "pareto_plot", "policy_stats_plot"]
