# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Test-session settings, applied before any test module imports `datasets`."""

import atexit
import os
import shutil
import tempfile


# Local datasets loaded by the tests (imagefolder, ...) write Arrow caches; keep them out of the user's
# ~/.cache/huggingface and delete them when the session ends.
_datasets_cache = tempfile.mkdtemp(prefix="ppt-tests-datasets-")
os.environ["HF_DATASETS_CACHE"] = _datasets_cache
atexit.register(shutil.rmtree, _datasets_cache, ignore_errors=True)
