# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""A non-editable `pip install .` holds every package the commands need: train.py and benchmark.py, copied away
from the checkout, and `python -m model_card.publish` run on the installed packages alone.

The test environment usually has the project installed in editable mode too, which could quietly supply a module
the real install lacks. So each command runs under a wrapper that, at exit, checks that every project module it
loaded came from the fresh install."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]

WRAPPER = textwrap.dedent('''
    import atexit, os, runpy, sys

    site, target = sys.argv[1], sys.argv[2]
    project = {name.split(".")[0] for name in os.environ["PROJECT_PACKAGES"].split(",")}

    def check():
        outside = sorted(name for name, module in list(sys.modules.items())
                         if name.split(".")[0] in project and getattr(module, "__file__", None)
                         and not os.path.abspath(module.__file__).startswith(site))
        if outside:
            print("loaded from outside the install: " + ", ".join(outside), file=sys.stderr)
            os._exit(3)

    atexit.register(check)
    sys.argv = sys.argv[2:]
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
''')


@pytest.mark.slow
def test_a_non_editable_install_runs_train_benchmark_and_publish(tmp_path):
    source = tmp_path / "source"  # pip builds inside the source tree: build from a copy, not the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "--target", str(site),
                    str(source)], check=True, capture_output=True, timeout=300)
    assert sorted(path.name for path in site.iterdir() if not path.name.endswith(".dist-info")) == sorted(PACKAGES)

    work = tmp_path / "work"  # the scripts, away from the checkout and its packages
    work.mkdir()
    for script in ("train.py", "benchmark.py"):
        shutil.copy(ROOT / script, work / script)
    (work / "wrapper.py").write_text(WRAPPER)
    env = {**os.environ, "PYTHONPATH": str(site), "PROJECT_PACKAGES": ",".join(PACKAGES), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}

    def run(*argv):
        done = subprocess.run([sys.executable, "wrapper.py", str(site), *map(str, argv)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    run("train.py", "--preset", "digits", "--max_steps", "2", "--num_train_epochs", "1", "--output_dir", "run",
        "--disable_tqdm", "True", "--report_to", "none")
    assert json.loads((work / "run" / "all_results.json").read_text())["eval_samples"] == 360
    run("benchmark.py", "--checkpoint", "run", "--dataset_name", "digits", "--max_eval_samples", "16", "--cost_only",
        "--no_progress", "--output_dir", "bench")
    report = json.loads((work / "bench" / "benchmark_inference.json").read_text())
    assert report["models"]["ppt"]["accuracy"]["num_samples"] == 16
    run("model_card.publish", "run", "--repo_id", "someone/ppt-digits", "--dry_run", "--output_dir", "export",
        "--results", "run/all_results.json", "bench/benchmark_inference.json")
    assert (work / "export" / "model.safetensors").is_file() and (work / "export" / "README.md").is_file()
