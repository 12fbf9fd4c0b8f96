# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The shared fixtures of the test suite: the tiny PPT-DeiT's saved checkpoint and small local datasets in the real
formats (built by `helpers` and `model_fixtures`). Everything is offline and takes seconds on a CPU.

Test-session settings are applied here, before any test module imports `datasets`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile


# Local datasets loaded by the tests (imagefolder, ...) write Arrow caches; keep them out of the user's
# ~/.cache/huggingface and delete them when the session ends. Set before anything imports `datasets`.
_datasets_cache = tempfile.mkdtemp(prefix="ppt-tests-datasets-")
os.environ["HF_DATASETS_CACHE"] = _datasets_cache
atexit.register(shutil.rmtree, _datasets_cache, ignore_errors=True)

import pytest  # noqa: E402
from helpers import BATTERY_OUTCOMES, save_cifar100_like, save_labelled  # noqa: E402
from model_fixtures import tiny_model  # noqa: E402


# ---- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> str:
    """The tiny PPT-DeiT (`model_fixtures.tiny_model()`: 65 -> 57 -> 49 tokens, 10 classes) saved with
    save_pretrained, without an image processor (tools fall back to a resize with ImageNet statistics)."""
    path = tmp_path_factory.mktemp("tiny-checkpoint")
    tiny_model().save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def cifar100_path(tmp_path_factory) -> str:
    """A save_to_disk folder with CIFAR-100's columns: 48 train and 24 test images of 24 px."""
    return save_cifar100_like(tmp_path_factory.mktemp("cifar100"))


@pytest.fixture(scope="session")
def labelled_dataset(tmp_path_factory) -> str:
    """A save_to_disk folder for the tiny model's 10 classes: 16 train and 8 validation images of 32 px."""
    return save_labelled(tmp_path_factory.mktemp("labelled") / "data", [i % 10 for i in range(16)],
                         [i % 10 for i in range(16, 24)])


def pytest_terminal_summary(terminalreporter, config):
    """The counts of the bad-input battery, when it ran: cases tried, clear, raw tracebacks, bad."""
    outcomes = config.stash.get(BATTERY_OUTCOMES, None)
    if outcomes:
        counts = {category: sum(1 for _, seen in outcomes if seen == category) for category in ("clear", "traceback", "bad")}
        terminalreporter.write_line(
            f"bad-input battery: {len(outcomes)} tried, {counts['clear']} clear, {counts['traceback']} raw traceback, "
            f"{counts['bad']} bad (accepted, or a file changed)"
        )
