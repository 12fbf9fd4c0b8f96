# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Bad input to benchmark.py: one line `benchmark.py <command>: error: <message>` naming the bad value, exit code 2,
no traceback, nothing written. The CLI runs in-process (`ppt_benchmark.cli.main`) on a tiny model."""

from __future__ import annotations

import pytest
import torch

from model_fixtures import tiny_model
from ppt_benchmark.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The tiny PPT-DeiT (4 layers, 32 px, patch 4, 10 classes, r=8 at layers 1 and 2), saved with save_pretrained."""
    path = tmp_path_factory.mktemp("ckpt")
    tiny_model().save_pretrained(path)
    return str(path)


def rejected(capsys, argv: list[str], *expected: str, output_dir=None) -> str:
    """Run the CLI; assert it fails as bad input should, with every `expected` text in its message. Returns it."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("benchmark.py ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    command = argv[0] if argv and not argv[0].startswith("-") else "run"
    prefix = f"benchmark.py {command}: error: "
    assert errors[0].startswith(prefix), errors[0]
    message = errors[0][len(prefix):]
    for text in expected:
        assert text in message, message
    if output_dir is not None:
        assert not output_dir.exists() or not any(output_dir.iterdir())
    return message


# ---- 1. one clear line instead of a traceback --------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--score_function", "bogus"], ["'bogus'", "ats", "cls_attention", "entropy"]),
        (["--tokens_removed", "999"], ["tokens_removed=999", "32"]),
        (["--reduction_layers", "9"], ["reduction_layers contains 9", "[0, 3]"]),
        (["--batch_size", "0"], ["batch_size", "0", ">= 1"]),
        (["--threads", "0"], ["threads", "0", ">= 1"]),
    ],
    ids=["score_function", "tokens_removed", "reduction_layer", "batch_size", "threads"],
)
def test_run_bad_option_is_one_line(checkpoint, tmp_path, capsys, extra, expected):
    out = tmp_path / "out"
    rejected(capsys, ["--checkpoint", checkpoint, "--cost_only", "--no_stock", "--output_dir", str(out), *extra],
             *expected, output_dir=out)


def test_model_source_must_be_exactly_one(checkpoint, capsys):
    rejected(capsys, ["--cost_only"], "--arch", "--checkpoint")
    rejected(capsys, ["--cost_only", "--arch", "deit-tiny", "--checkpoint", checkpoint], "--arch", "--checkpoint")


def test_output_dir_that_is_a_file(checkpoint, tmp_path, capsys):
    path = tmp_path / "file.txt"
    path.write_text("keep me")
    rejected(capsys, ["--checkpoint", checkpoint, "--cost_only", "--output_dir", str(path)], str(path), "not a directory")
    assert path.read_text() == "keep me"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_run_cuda_without_cuda(checkpoint, capsys):
    rejected(capsys, ["--checkpoint", checkpoint, "--cost_only", "--device", "cuda"], "'cuda'", "CUDA is not available")


def test_internal_errors_keep_their_traceback(checkpoint, monkeypatch):
    """Only bad input is turned into one line: a bug (here a RuntimeError) still raises."""
    import ppt_benchmark.runner as runner

    def broken(options):
        raise RuntimeError("a bug")

    monkeypatch.setattr(runner, "run_benchmark", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["--checkpoint", checkpoint, "--cost_only"])
