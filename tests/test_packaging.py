# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""A non-editable `pip install .` holds every package the commands need: train.py and benchmark.py, copied away
from the checkout, and `ppt-publish` run on the installed packages alone.

The test environment usually has the project installed in editable mode too, which could quietly supply a module
the real install lacks. So each command runs under a wrapper that, at exit, checks that every project module it
loaded came from the fresh install, and lists the modules it used. The third-party packages the installed code
imports must all be declared in the install's metadata, and those the commands used must be core dependencies (what
a fresh venv gets from `pip install .`), not an extra's."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement


ROOT = Path(__file__).resolve().parents[1]
# The packages of the checkout (not pyproject's list, which is what is under test: a package missing from it must
# show up as a module loaded from outside the install).
PACKAGES = sorted(path.parent.name for path in ROOT.glob("*/__init__.py")
                  if path.parent.name not in ("tests", "model_card"))  # model_card/ installs as ppt_tools.templates

WRAPPER = textwrap.dedent('''
    import atexit, json, os, runpy, sys, sysconfig

    site, target = sys.argv[1], sys.argv[2]
    project = {name.split(".")[0] for name in os.environ["PROJECT_PACKAGES"].split(",")}
    stdlib = os.path.abspath(sysconfig.get_paths()["stdlib"])

    def check():
        modules = [(name, os.path.abspath(module.__file__)) for name, module in list(sys.modules.items())
                   if getattr(module, "__file__", None)]
        outside = sorted(name for name, path in modules if name.split(".")[0] in project and not path.startswith(site))
        if outside:
            print("loaded from outside the install: " + ", ".join(outside), file=sys.stderr)
            os._exit(3)
        # the third-party modules the command used, for the test to hold against the declared dependencies
        third_party = sorted({name.split(".")[0] for name, path in modules if name.split(".")[0] not in project
                              and not path.startswith(site) and "-packages" + os.sep in path
                              and not path.startswith(stdlib + os.sep + "lib-dynload")})
        with open(os.environ["THIRD_PARTY_LOG"], "a") as log:
            log.write(json.dumps(third_party) + "\\n")

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
    for folder in (*PACKAGES, "model_card"):  # model_card/: the templates, installed as ppt_tools.templates
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "--target", str(site),
                    str(source)], check=True, capture_output=True, timeout=300)
    assert sorted(path.name for path in site.iterdir() if not path.name.endswith(".dist-info")) == sorted([*PACKAGES, "bin"])
    assert {path.name for path in (site / "bin").iterdir()} == {
        "ppt-train", "ppt-benchmark", "ppt-analysis", "ppt-publish", "ppt-export-onnx", "ppt-demo"}
    assert (site / "ppt_tools" / "templates" / "template.md").is_file()

    work = tmp_path / "work"  # the scripts, away from the checkout and its packages
    work.mkdir()
    for script in ("train.py", "benchmark.py"):
        shutil.copy(ROOT / script, work / script)
    (work / "wrapper.py").write_text(WRAPPER)
    env = {**os.environ, "PYTHONPATH": str(site), "PROJECT_PACKAGES": ",".join(PACKAGES), "HF_HUB_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "THIRD_PARTY_LOG": str(tmp_path / "third_party.jsonl")}

    def run(*argv):
        done = subprocess.run([sys.executable, "wrapper.py", str(site), *map(str, argv)], cwd=work, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        return done

    run("train.py", "--preset", "digits", "--max_steps", "2", "--num_train_epochs", "1", "--output_dir", "run",
        "--disable_tqdm", "True", "--report_to", "none")
    assert json.loads((work / "run" / "all_results.json").read_text())["eval_samples"] == 360
    run("benchmark.py", "--model_name_or_path", "run", "--dataset_name", "digits", "--max_eval_samples", "16", "--cost_only",
        "--no_progress", "--output_dir", "bench")
    report = json.loads((work / "bench" / "benchmark_inference.json").read_text())
    assert report["models"]["ppt"]["accuracy"]["num_samples"] == 16
    run("ppt_tools.export.publish", "--model_name_or_path", "run", "--hub_model_id", "someone/ppt-digits", "--dry_run", "--output_dir", "export",
        "--results", "run/all_results.json", "bench/benchmark_inference.json")
    assert (work / "export" / "model.safetensors").is_file() and (work / "export" / "README.md").is_file()

    # Every third-party package the installed code imports is declared (a core dependency, or an extra for optional
    # paths), and those the three commands actually used are core dependencies: a fresh venv gets them.
    installed = next(metadata.distributions(path=[str(site)]))  # the fresh install's own metadata
    declared = {canonical(Requirement(line).name): Requirement(line) for line in installed.requires or []}
    core = {name for name, requirement in declared.items() if requirement.marker is None}
    owners = metadata.packages_distributions()
    imported = third_party_imports([*(site / package for package in PACKAGES), work / "train.py",
                                    work / "benchmark.py"])
    undeclared = {module: owners.get(module) for module in imported
                  if not {canonical(name) for name in owners.get(module, [])} & set(declared)}
    assert not undeclared, f"imported but not declared in pyproject's dependencies: {undeclared}"
    used = set().union(*map(set, map(json.loads, (tmp_path / "third_party.jsonl").read_text().splitlines())))
    not_core = {module: owners[module] for module in imported & used
                if not {canonical(name) for name in owners[module]} & core}
    assert not not_core, f"the commands imported packages that only an extra installs: {not_core}"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def third_party_imports(paths) -> set[str]:
    """The top-level names of what the Python files at `paths` (folders searched) import, stdlib and project aside."""
    files = [file for path in paths for file in ([path] if path.is_file() else sorted(path.rglob("*.py")))]
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in sys.stdlib_module_names and name not in PACKAGES}
