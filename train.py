#!/usr/bin/env python
# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""`accelerate launch train.py` / `python train.py` from a checkout: the same command as `ppt-train`
(`ppt_tools.train`, where the options and the run are documented)."""

import sys

from ppt_tools.train import cli


if __name__ == "__main__":
    sys.exit(cli())
