# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""A Hugging Face Space that runs PPT itself (the model repo's widget cannot: it runs no custom code), and the example
images of a model repo.

`write_space_folder` writes the folder that `ppt_tools.export.publish.push_space` uploads:

- `app.py`: serves `space_app.build_demo(<model repo>)` at the model revision it was written for, with the model's
  own code (`trust_remote_code=True`, said in the file, as the demo runs a model's code only when told to);
- `space_app.py`: `ppt_tools/demo.py` as it is, and the modules it imports beside it (`ppt_tools/core/cost.py`,
  `ppt_tools/core/timing.py`, `ppt_tools/core/errors.py`, `ppt_tools/analysis/token_maps.py`, and
  `modeling_ppt_deit/`, which the cost model reads);
- `requirements.txt`: the versions installed where the folder was written (those the tests ran with);
- `README.md`: the Space card (`sdk: gradio`, `models: [<model repo>]`);
- `examples/`: the model repo's example images (its evaluation images), else, for an ImageNet classifier,
  scikit-learn's two sample photos.

The model repo's example images are `ppt_tools.core.data.evaluation_examples` (re-exported here for `publish`,
which stores them in the model repo, where the card's widget points at them).
"""

from __future__ import annotations

import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from huggingface_hub import SpaceCardData
from PIL import Image

from ppt_tools.core.data import evaluation_examples, save_examples  # noqa: F401 (publish's, from here)
from ppt_tools.core.outputs import FOLDER, MANIFEST_FILE, RUNTIME_LEFTOVERS, OutputTarget, check_replaceable, refuse_edited


ROOT = Path(__file__).resolve().parents[2]  # the folder that holds ppt_tools/ and modeling_ppt_deit/
EXAMPLES_DIR = "examples"
# Space file -> the project file it is a copy of.
SPACE_CODE = {
    "space_app.py": "ppt_tools/demo.py",
    "ppt_tools/__init__.py": "ppt_tools/__init__.py",
    "ppt_tools/core/__init__.py": "ppt_tools/core/__init__.py",
    "ppt_tools/analysis/__init__.py": "ppt_tools/analysis/__init__.py",
    "ppt_tools/core/cost.py": "ppt_tools/core/cost.py",
    "ppt_tools/core/timing.py": "ppt_tools/core/timing.py",
    "ppt_tools/core/errors.py": "ppt_tools/core/errors.py",
    "ppt_tools/analysis/token_maps.py": "ppt_tools/analysis/token_maps.py",
    "modeling_ppt_deit/__init__.py": "modeling_ppt_deit/__init__.py",
    "modeling_ppt_deit/configuration_ppt_deit.py": "modeling_ppt_deit/configuration_ppt_deit.py",
    "modeling_ppt_deit/modeling_ppt_deit.py": "modeling_ppt_deit/modeling_ppt_deit.py",
    "modeling_ppt_deit/token_ops.py": "modeling_ppt_deit/token_ops.py",
}
SPACE_TOP_LEVEL = {"app.py", "requirements.txt", "README.md", EXAMPLES_DIR, MANIFEST_FILE,
                   *(name.split("/")[0] for name in SPACE_CODE)}
SPACE_REQUIRED = ("app.py", "requirements.txt", "README.md", "space_app.py")
# What the Space installs, pinned to the versions here (distribution names).
SPACE_REQUIREMENTS = ("torch", "transformers", "huggingface_hub", "safetensors", "gradio", "matplotlib", "numpy",
                      "pillow", "tqdm")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

APP_TEMPLATE = '''"""PPT (token Pruning & Pooling) demo for the model {model_repo_id}: see README.md."""

import os
from pathlib import Path

from space_app import build_demo


# The model repo and the revision of it this Space was written for: a later push to the model repo changes neither
# the weights nor the code this Space runs. {pin_note}
MODEL, REVISION = "{model_repo_id}", {revision}
# PPT_DEMO_CHECKPOINT serves another checkpoint (a local folder or repo id, unpinned) with this Space's code, e.g. to
# try the Space locally before pushing it.
if os.environ.get("PPT_DEMO_CHECKPOINT"):
    MODEL, REVISION = os.environ["PPT_DEMO_CHECKPOINT"], None
# trust_remote_code=True: the Space runs the model repo's own code (its modeling_ppt_deit.py at REVISION), the code
# its weights were exported with and that its users load; the demo runs a model's code only when told to.
demo = build_demo(MODEL, revision=REVISION, trust_remote_code=True, examples=Path(__file__).parent / "examples",
                  title=MODEL)

if __name__ == "__main__":
    demo.launch(max_file_size="25mb")
'''
PINNED_NOTE = "Pinned by ppt-publish to the commit it uploaded (or the revision it was given)."
UNPINNED_NOTE = ("Unpinned (None: the latest commit of the main branch): written with --dry_run, before the model was "
                 "uploaded;\n# set REVISION to the model commit this Space should serve.")

SPACE_CARD_TEMPLATE = """---
{card_data}
---

# PPT on your image: {model_repo_id}

This Space runs [{model_repo_id}](https://huggingface.co/{model_repo_id}) with token Pruning & Pooling (PPT,
[arXiv 2310.01812](https://arxiv.org/abs/2310.01812)) switched on, which the model page's widget cannot do (it runs
no custom code, so it shows the uncompressed model). For an image and your choice of `tokens_removed`,
`prune_threshold` and score function it shows, compression off next to on:

- the top-5 labels with probabilities;
- per reduction layer, which patches were pruned (grey, crossed) and which were merged (one colour per token);
- the MACs per image (cost model) and the latency of both, measured on this Space's hardware.

It runs the model repo's own code and weights {revision_text}.

Written by `ppt-publish ... --space` of the PPT-DeiT project; `space_app.py` and the modules beside
it are copies of that project's files, and `requirements.txt` pins the versions it was tested with.
"""


class SpaceFolderError(ValueError):
    """The Space folder cannot be written where asked (a folder this tool did not write)."""


def installed_requirements() -> list[str]:
    """`name==version` for each of `SPACE_REQUIREMENTS`, as installed here; a CPU build of torch (`+cpu`) comes from
    PyTorch's CPU index, so a CPU Space does not download CUDA libraries."""
    lines = []
    for name in SPACE_REQUIREMENTS:
        version = metadata.version(name)
        if name == "torch" and "+cpu" in version:
            lines.insert(0, f"--extra-index-url {TORCH_CPU_INDEX}")
        lines.append(f"{name}=={version}")
    return lines


def is_space_folder(folder: Path) -> bool:
    """A folder this module wrote (and may replace): the Space's files and nothing else."""
    names = {entry.name for entry in folder.iterdir()}
    return set(SPACE_REQUIRED) <= names <= SPACE_TOP_LEVEL | RUNTIME_LEFTOVERS


def check_space_dir(output_dir) -> Path:
    """`output_dir` resolved (a symlink followed); `SpaceFolderError` if it holds anything but a previous Space, or
    a Space in which a file changed or appeared since this tool wrote it (its manifest says which)."""
    try:  # first: a Space this tool wrote names the files changed or added since (the layout check would not)
        refuse_edited(os.path.realpath(output_dir), "space folder", "keep a copy of your changes, then pass another "
                      "--space_dir (or delete the folder)")
    except ValueError as error:
        raise SpaceFolderError(str(error)) from None
    return check_replaceable(output_dir, is_space_folder, "space folder",
                             f"a Space this tool wrote (which holds only {sorted(SPACE_TOP_LEVEL)})",
                             "writing the Space replaces its content", error=SpaceFolderError)


def sample_photos() -> list[tuple[str, Image.Image]]:
    """scikit-learn's two bundled photos (a pagoda, a flower): examples for an ImageNet classifier."""
    from sklearn.datasets import load_sample_image

    return [(name, Image.fromarray(load_sample_image(name))) for name in ("china.jpg", "flower.jpg")]


def space_card(model_repo_id: str, title: str | None = None, model_revision: str | None = None) -> str:
    data = SpaceCardData(
        title=title or f"PPT demo: {model_repo_id.split('/')[-1]}"[:60],
        emoji="✂️",
        colorFrom="indigo",
        colorTo="yellow",
        sdk="gradio",
        sdk_version=metadata.version("gradio"),
        app_file="app.py",
        models=[model_repo_id],
        license="apache-2.0",
        pinned=False,
        short_description="Token Pruning & Pooling, layer by layer, on your image",
    )
    revision_text = (f"at revision `{model_revision}`" if model_revision else
                     "at the latest commit of its main branch (unpinned)")
    return SPACE_CARD_TEMPLATE.format(card_data=data.to_yaml(), model_repo_id=model_repo_id,
                                      revision_text=revision_text)


def write_space_folder(output_dir, model_repo_id: str, examples=None, num_labels: int | None = None,
                       title: str | None = None, model_revision: str | None = None) -> Path:
    """Write the Space folder for the model repo `model_repo_id` (contents in the module docstring); return it.

    Args:
        output_dir: new, empty, or a Space this function wrote and nobody edited since (replaced as a whole, via a
            folder built beside it: `ppt_tools.core.outputs`). Anything else is refused (`SpaceFolderError`).
        model_repo_id: the Hub model repo the Space serves.
        examples: a folder of example images (the model export's `examples/`), copied as they are.
        num_labels: the model's classes; without example images, a 1000-class (ImageNet) model gets scikit-learn's
            two sample photos, any other none (photos would not fit its task).
        title: the Space's title.
        model_revision: the revision of the model repo the Space serves (the commit `publish` uploaded, or the
            revision it was given); None serves the latest commit of its main branch, and the app says so.
    """
    output_dir = check_space_dir(output_dir)
    with OutputTarget(output_dir, kind=FOLDER) as output, output.staging() as staging:
        check_space_dir(output_dir)  # again, under the lock
        # A JSON string is a Python string literal too (a branch name is the user's text, never code).
        app = APP_TEMPLATE.format(model_repo_id=model_repo_id,
                                  revision=json.dumps(model_revision) if model_revision else "None",
                                  pin_note=PINNED_NOTE if model_revision else UNPINNED_NOTE)
        (staging / "app.py").write_text(app, encoding="utf-8")
        (staging / "requirements.txt").write_text("\n".join(installed_requirements()) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(space_card(model_repo_id, title, model_revision), encoding="utf-8")
        for target, source in SPACE_CODE.items():
            (staging / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / source, staging / target)
        example_dir = staging / EXAMPLES_DIR
        example_dir.mkdir()
        copied = 0
        if examples is not None and Path(examples).is_dir():
            for path in sorted(Path(examples).iterdir()):
                if path.is_file():
                    shutil.copyfile(path, example_dir / path.name)
                    copied += 1
        if not copied and num_labels == 1000:
            for name, photo in sample_photos():
                photo.save(example_dir / name, quality=90)
    return output_dir
