# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The README as a user meets it: its Python snippets run as written (offline, on a short digits run in
`outputs/digits`), and every option its commands pass is one that command accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hub_fixtures import offline_env, run_python


ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)


def command_lines() -> list[list[str]]:
    """The README's shell commands, continuation lines joined, `cmd1 && cmd2` split, comments dropped."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            commands += [shlex.split(part) for part in line.split("&&")]
    return commands


# command -> how to list its options (a module run with --help)
HELP = {
    "train.py": ["train.py", "--help"],
    "ppt-train": ["train.py", "--help"],
    "benchmark.py": ["benchmark.py", "--help"],
    "ppt-benchmark": ["benchmark.py", "--help"],
    "ppt-publish": ["-m", "ppt_tools.export.publish", "--help"],
    "ppt-export-onnx": ["-m", "ppt_tools.export.onnx", "--help"],
    "ppt-demo": ["-m", "ppt_tools.demo", "--help"],
}


def command_and_options(argv: list[str]) -> tuple[list[str], list[str]] | None:
    """`(help argv, the --options used)` for a command of the project, else None (pip, python -c, ...)."""
    while argv and (argv[0] in ("accelerate", "launch") or "=" in argv[0] or argv[0].startswith("--num_processes")
                    or argv[0] in ("python", "4")):
        argv = argv[1:]
    if not argv:
        return None
    if argv[0] == "ppt-analysis":
        help_argv = ["-m", "ppt_tools.analysis", argv[1], "--help"]
    elif argv[0] in HELP:
        help_argv = HELP[argv[0]]
    else:
        return None
    return help_argv, [word for word in argv if word.startswith("--") and word != "--num_processes"]


@pytest.mark.slow
def test_every_option_in_the_readme_commands_exists():
    used: dict[tuple[str, ...], set[str]] = {}
    for argv in command_lines():
        found = command_and_options(argv)
        if found:
            used.setdefault(tuple(found[0]), set()).update(found[1])
    assert len(used) >= 8, used  # train, benchmark, four analysis commands, publish, export, demo
    for help_argv, options in used.items():
        done = run_python(args=list(help_argv), env=offline_env(), timeout=300, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        missing = sorted(option for option in options if not re.search(rf"{re.escape(option)}\b", done.stdout))
        assert not missing, f"{' '.join(help_argv)} does not know {missing}"


@pytest.mark.slow
def test_the_python_snippets_run_on_the_quick_start_model(tmp_path):
    """The quick start (shortened to a few steps), then the README's offline snippets in order, in one process: the
    local folder through AutoModel and pipeline, a registered score, the ONNX export and ONNX Runtime. The snippet
    that needs the Hub is left out, and so is the `...` placeholder of a context block."""
    pytest.importorskip("onnxruntime")
    blocks = code_blocks("python")
    offline = [block for block in blocks if "facebook/" not in block]
    assert len(offline) == 3 and len(blocks) == 4, blocks
    train = run_python(args=[str(ROOT / "train.py"), "--preset", "digits", "--max_steps", "3", "--output_dir",
                             "outputs/digits", "--disable_tqdm", "True", "--report_to", "none"],
                       env=offline_env(), timeout=600, cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    export = ["-m", "ppt_tools.export.onnx", "--model_name_or_path", "outputs/digits", "--output_file",
              "outputs/digits.onnx"]
    assert any(" ".join(export[2:]) in " ".join(argv) for argv in command_lines())  # the README's own command
    script = "\n".join([offline[0], offline[1],
                        f"import subprocess, sys\nsubprocess.run([sys.executable, *{export!r}], check=True)",
                        offline[2]])
    (tmp_path / "snippets.py").write_text(script)
    done = run_python(args=["snippets.py"], env=offline_env(), timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    printed = done.stdout.splitlines()
    labels = {str(index) for index in range(10)}
    assert printed[0] in labels  # the label of the digit, by the model
    assert [line.split()[1:3] for line in printed[1:4]] == [["65", "57"], ["57", "49"], ["49", "41"]]
    assert printed[-1] == printed[0]  # ONNX Runtime gives the label PyTorch gave
