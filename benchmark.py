#!/usr/bin/env python
# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""`python benchmark.py` from a checkout: the same command as `ppt-benchmark` (`ppt_tools.benchmark`, where the
modes and options are documented)."""

import sys

from ppt_tools.benchmark import main


if __name__ == "__main__":
    sys.exit(main())
