# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The remote code shipped in the Hub folder: imports only torch / transformers / huggingface_hub, harmless standard
modules and its sibling files, and does no I/O, process or network work when imported."""

from __future__ import annotations

import ast
import json
import shutil
import textwrap

from hub_fixtures import make_tmpdir, run_python, trained_export
from ppt_tools.export.publish import CODE_FILES


ALLOWED_THIRD_PARTY = {"torch", "transformers", "huggingface_hub"}
# Pure-computation standard modules; anything else (os, sys, subprocess, socket, urllib, pickle, importlib, ...)
# is refused.
ALLOWED_STDLIB = {"__future__", "math", "dataclasses", "typing", "collections", "functools", "itertools", "enum",
                  "numbers", "abc", "warnings", "re", "contextlib", "copy"}
SIBLINGS = {name.removesuffix(".py") for name in CODE_FILES}
FORBIDDEN_CALLS = {"open", "exec", "eval", "compile", "__import__", "input", "breakpoint"}


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(level, module) for every import: level 0 = absolute, 1 = sibling."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
    return found


def test_shipped_code_imports_only_allowed_modules():
    folder = trained_export().folder
    for name in CODE_FILES:
        tree = ast.parse((folder / name).read_text(), filename=name)
        imports = _imports(tree)
        assert imports, name
        for level, module in imports:
            if level == 0:
                root = module.split(".")[0]
                assert root in ALLOWED_THIRD_PARTY | ALLOWED_STDLIB, f"{name} imports {module}"
            else:
                assert level == 1 and module in SIBLINGS, f"{name} imports {'.' * level}{module}"
        calls = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name)}
        assert not calls & FORBIDDEN_CALLS, f"{name} calls {calls & FORBIDDEN_CALLS}"


def test_import_scan_catches_a_bad_import():
    """The scan above is not vacuous: it flags I/O modules and non-sibling relative imports."""
    tree = ast.parse("import os\nfrom ..x import y\nfrom .token_ops import a\nimport urllib.request")
    assert _imports(tree) == [(0, "os"), (2, "x"), (1, "token_ops"), (0, "urllib.request")]


AUDITED_IMPORT = textwrap.dedent(
    """
    import json, sys
    package_parent, out_path = sys.argv[1:3]
    # Everything the shipped code imports from outside itself is loaded before listening.
    import torch, transformers, huggingface_hub.dataclasses
    import transformers.initialization, transformers.modeling_outputs, transformers.utils
    import transformers.models.deit.modeling_deit
    from transformers import DeiTConfig
    events = []
    WATCH = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "urllib.", "http.",
             "shutil.", "os.remove", "os.rename", "os.mkdir")
    def hook(event, args):
        if event.startswith(WATCH):
            events.append([event, repr(args)[:200]])
        elif event == "open":
            path, mode = args[0], args[1]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(args[2], int) and args[2] & 0o3)
            if writing:
                events.append([event, repr(args)[:200]])
    sys.path.insert(0, package_parent)
    sys.addaudithook(hook)
    import shipped_ppt.modeling_ppt_deit as modeling
    config = modeling.PPTDeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                    image_size=32, patch_size=8, reduction_layers=[1], tokens_removed=4)
    modeling.PPTDeiTForImageClassification(config)
    during_import = list(events)
    with open(out_path, "w") as canary:  # the hook does see a write (the check below is not vacuous)
        canary.write("x")
    sys.stdout.write(json.dumps({"during_import": during_import, "canary": events[len(during_import):]}))
    """
)


def test_importing_the_shipped_code_does_no_io_or_network():
    folder = trained_export().folder
    parent = make_tmpdir("ppt-shipped-")
    package = parent / "shipped_ppt"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in CODE_FILES:
        shutil.copyfile(folder / name, package / name)
    done = run_python(AUDITED_IMPORT, args=[str(parent), str(parent / "events.json")])
    assert done.returncode == 0, done.stderr[-4000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["during_import"] == []
    assert [event for event, args in got["canary"]] == ["open"]
