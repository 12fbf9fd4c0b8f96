# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Fetch transformers' own common model tests for the installed transformers version, for
tests/test_transformers_common.py.

The transformers sdist on PyPI ships tests/test_modeling_common.py and tests/test_configuration_common.py, but not
three modules they import (tests/exporters/test_export.py, tests/generation/test_utils.py,
tests/utils/test_configuration_utils.py). This script downloads the sdist of the installed version with pip (network:
PyPI only), extracts the two files into a package `transformers_common_tests` and adds stubs for the three missing
modules: empty `ExportTesterMixin` / `GenerationTesterMixin` classes (their tests are about export and text
generation, not an image classifier) and an empty `config_common_kwargs` (used only by
`ConfigTester.check_config_arguments_init`, which our test does not call).

    python scripts/fetch_transformers_tests.py            # into ~/.cache/ppt-deit/transformers-tests/<version>/
    PPT_TRANSFORMERS_TESTS=/some/dir python scripts/...   # elsewhere (the tests read the same variable)

`bash .ci/run` runs it before the tests. Without it, tests/test_transformers_common.py is skipped with a message that
names this command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


PACKAGE = "transformers_common_tests"
FILES = ("tests/test_modeling_common.py", "tests/test_configuration_common.py")
STUBS = {
    "exporters/test_export.py": '"""Stub: not in the transformers sdist; export tests do not apply here."""\n\n\n'
    "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": '"""Stub: not in the transformers sdist; generation tests do not apply to an image '
    'classifier."""\n\n\nclass GenerationTesterMixin:\n    pass\n',
    "utils/test_configuration_utils.py": '"""Stub: not in the transformers sdist. Only ConfigTester.'
    'check_config_arguments_init reads this, and tests/test_transformers_common.py does not call it."""\n\n'
    "config_common_kwargs = {}\n",
}


def cache_root() -> Path:
    return Path(os.environ.get("PPT_TRANSFORMERS_TESTS", Path.home() / ".cache" / "ppt-deit" / "transformers-tests"))


def fetch(version: str, root: Path) -> Path:
    """Download and lay out the tests of transformers `version` under `root / version`; returns that folder."""
    target = root / version
    package = target / PACKAGE
    if all((package / Path(name).name).is_file() for name in FILES):
        return target
    with tempfile.TemporaryDirectory(prefix="transformers-sdist-") as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", f"transformers=={version}", "--dest", download],
            check=True,
        )
        (archive,) = Path(download).glob("transformers-*.tar.gz")
        staging = Path(tempfile.mkdtemp(prefix=f"{PACKAGE}-", dir=target.parent if target.parent.exists() else None))
        try:
            with tarfile.open(archive) as sdist:
                for name in FILES:
                    member = sdist.getmember(f"transformers-{version}/{name}")
                    source = sdist.extractfile(member)
                    (staging / Path(name).name).write_bytes(source.read())
            for relative, text in STUBS.items():
                path = staging / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            for folder in [staging, *(p for p in staging.rglob("*") if p.is_dir())]:
                (folder / "__init__.py").touch()
            target.mkdir(parents=True, exist_ok=True)
            if package.exists():
                shutil.rmtree(package)
            staging.rename(package)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def main() -> int:
    import transformers

    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    target = fetch(transformers.__version__, root)
    print(f"transformers {transformers.__version__} common tests in {target / PACKAGE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
