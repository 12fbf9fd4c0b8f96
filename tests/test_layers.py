# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Dependencies run one way. Every import of the project's own code (function-local ones included) is read from
the source and held against the layers:

    1. modeling_ppt_deit                      the shipped model: torch + transformers only
    2. ppt_tools.core                         the evaluation / cost core (and the package's own __init__)
    3. ppt_tools.training, .analysis, .export what the commands need beyond the core, side by side
    4. ppt_tools.train, .benchmark, .demo     the entry points, side by side (train.py and benchmark.py at the top
                                              of the checkout are theirs)
    5. scripts/                               the runbooks' helpers, on top of everything

A file may import its own component and lower layers, never a higher layer nor a sibling; and the graph of module
imports has no cycle, so no function-local import can be hiding one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]

# component -> (layer, the components it may import besides itself)
COMPONENTS = {
    "modeling_ppt_deit": (1, set()),
    "model_card": (1, set()),  # the templates (installed as ppt_tools.templates): no code
    "core": (2, {"modeling_ppt_deit"}),
    "training": (3, {"modeling_ppt_deit", "core"}),
    "analysis": (3, {"modeling_ppt_deit", "core"}),
    "export": (3, {"modeling_ppt_deit", "core"}),
    "train": (4, {"modeling_ppt_deit", "core", "training", "export"}),
    "benchmark": (4, {"modeling_ppt_deit", "core", "export"}),
    "demo": (4, {"modeling_ppt_deit", "core", "analysis"}),
    "scripts": (5, {"modeling_ppt_deit", "core", "training", "analysis", "export", "train", "benchmark", "demo"}),
}


def component_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "ppt_tools":
        component = {"templates": "model_card"}.get(parts[1], parts[1]) if len(parts) > 1 else "core"
    else:
        component = parts[0]
    return component if component in COMPONENTS else None


def source_files() -> dict[str, Path]:
    """Module name -> file, for every Python file of the project outside tests/: the top-level scripts, every
    top-level package and scripts/ (found, not listed, so that a new file or package cannot escape the check)."""
    modules = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[0] in ("tests", "build", "dist") or any(part.startswith(".") for part in parts):
            continue
        if len(parts) > 1 and parts[0] != "scripts" and not (ROOT / parts[0] / "__init__.py").is_file():
            continue  # not a package of the project (a virtual environment, say)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def project_imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports, anywhere in the file, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            # the longest known module the name refers to (a module, or a name inside one)
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


MODULES = source_files()
GRAPH = {module: project_imports(module, path, set(MODULES)) for module, path in MODULES.items()}


def test_the_layers_cover_every_file():
    assert {component_of(module) for module in MODULES} == set(COMPONENTS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_its_own_component_and_lower_layers(module):
    component = component_of(module)
    allowed = COMPONENTS[component][1] | {component}
    wrong = sorted(target for target in GRAPH[module] if component_of(target) not in allowed)
    assert not wrong, f"{module} ({component}, layer {COMPONENTS[component][0]}) imports {wrong}"


def test_the_module_graph_has_no_cycle():
    state: dict[str, str] = {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                cycle = trail[trail.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_the_check_sees_a_wrong_import(tmp_path):
    """The reader resolves relative and function-local imports, so a lower layer reaching up is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from .sweep import run\n    import benchmark\n")
    found = project_imports("ppt_tools.core.bad", bad, set(MODULES) | {"ppt_tools.core.sweep"})
    assert found == {"ppt_tools.core.sweep", "benchmark"}
    assert component_of("benchmark") not in COMPONENTS["core"][1]


def test_gradio_is_imported_by_the_demo_app_alone():
    """gradio is the optional `.[demo]` extra: only the app module imports it, and the core install does not need it."""
    import tomllib

    importers = set()
    for module, path in source_files().items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.split(".")[0] in ("gradio", "gradio_client") for name in names):
                importers.add(module)
    assert importers == {"ppt_tools.demo"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(requirement.startswith("gradio") for requirement in project["dependencies"])
    assert any(requirement.startswith("gradio") for requirement in project["optional-dependencies"]["demo"])
