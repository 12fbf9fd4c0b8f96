# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Which exceptions are bad input, and how one is told in one line: the project's one error translator (the commands
use it through `ppt_tools.core.arguments.run_command`, the demo in its page).

A module of its own, importing only huggingface_hub, because the demo's Space carries a copy of it
(`ppt_tools.export.space`)."""

from __future__ import annotations

from huggingface_hub.errors import StrictDataclassError


# Bad input (an option, a path, a file's content) surfaces as one of these: `ValueError` from the checks and the
# config's validation, `StrictDataclassError` from a config field of the wrong type (transformers' strict configs),
# `OSError` from reading a model, dataset or image or writing results. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, StrictDataclassError)


# Raised inside from_pretrained by a config.json or weights that do not describe a loadable model: an unknown
# activation (KeyError), id2label that is not a mapping (AttributeError), weights of other shapes (RuntimeError), a
# config.json nested deeper than the JSON reader goes (RecursionError). A loader turns them into bad input naming the
# checkpoint (`ppt_tools.core.models`, the demo).
CHECKPOINT_CONTENT_ERRORS = (RuntimeError, TypeError, KeyError, AttributeError, ZeroDivisionError, RecursionError)


class CommandFailure(RuntimeError):
    """The input was fine but the work could not be done (the Hub unreachable, an upload refused, an export that
    does not reproduce the model): a command reports it as one line and exit code 1."""


# A message longer than this is cut in its middle: errors quote values from files and options (a config.json may
# list a million values), and the head (what) and tail (what to do) are what a reader needs.
MAX_MESSAGE_CHARACTERS = 1_000


def one_line(error: BaseException) -> str:
    """The message of `error` on one line, at most `MAX_MESSAGE_CHARACTERS` long; its type name if it has none."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__
    if len(text) <= MAX_MESSAGE_CHARACTERS:
        return text
    head, tail = MAX_MESSAGE_CHARACTERS * 3 // 4, MAX_MESSAGE_CHARACTERS // 5
    return f"{text[:head]} [... {len(text) - head - tail:,} characters left out ...] {text[-tail:]}"


__all__ = ["CHECKPOINT_CONTENT_ERRORS", "MAX_MESSAGE_CHARACTERS", "USER_ERRORS", "CommandFailure", "one_line"]
