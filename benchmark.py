#!/usr/bin/env python
# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Measure PPT-DeiT against its uncompressed baseline and the stock transformers ViT: `python benchmark.py --help`.

Same as `python -m ppt_benchmark`. Subcommands: run (default), sweep, score-table, policy-stats, calibrate,
step-cost, visualize.
"""

from ppt_benchmark.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
