# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Which exceptions are bad input, and how one is told in one line: the project's one error translator (the commands
use it through `ppt_tools.core.arguments.run_command`, the demo in its page).

A module of its own, importing nothing, because the demo's Space carries a copy of it (`ppt_tools.export.space`)."""

from __future__ import annotations


# Bad input (an option, a path, a file's content) surfaces as one of these: `ValueError` from the checks and the
# config's validation, `OSError` from reading a model, dataset or image or writing results. Anything else is a
# bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError)


def one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


__all__ = ["USER_ERRORS", "one_line"]
