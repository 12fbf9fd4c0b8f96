# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Analysis tools for PPT-DeiT, run as `ppt-analysis <command> [options]`:

- `sweep`: accuracy, MACs and measured speed over grids of r, tau, reduction layers and score functions, with the
  reference policies pool-only (tau = inf, ToMe) and prune-only (tau = 0, top-k); table and Pareto plots;
- `score-table`: the thesis's table of significance scores at equal MACs, off the shelf and fine-tuned;
- `policy-stats`: per reduction layer, the score variances and the fraction of images pruned vs pooled;
- `calibrate`: the tau that prunes a target fraction of the decisions;
- `visualize`: which patches one image pruned and which it pooled together.

They never leave a caller's model changed: settings are tried inside `model.compression_settings(...)`, which
restores them, or on a copy.
"""
