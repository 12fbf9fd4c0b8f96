# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The evaluation and cost core that train.py, benchmark.py, the analysis tools and model_card share.

It sits on the model package (`modeling_ppt_deit`) and on nothing of this project above it:

- `data`: loading image-classification datasets, the one split rule, columns, label and image checks, digits;
- `preprocessing`: images to `pixel_values` (the model's image processor; training augmentation);
- `accuracy`: top-1 / top-5 through one `evaluate` metric;
- `cost`: multiply-accumulates as a pure function of the config, checked against torch's flop counter;
- `timing`: interleaved timing of several models, peak memory;
- `models`: named DeiT sizes, checkpoint loading, the stock `transformers` classifier with the same weights;
- `arguments`: the command-line options the tools share, declared once;
- `results`: the one writer of result files (JSON, CSV, text), run-folder file names, the machine, tables.
"""
