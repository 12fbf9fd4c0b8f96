# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""A Hugging Face Space that runs PPT itself (the model repo's widget cannot: it runs no custom code), and the example
images of a model repo.

`write_space_folder` writes the folder that `ppt_tools.export.publish.push_space` uploads:

- `app.py`: serves `space_app.build_demo(<model repo>)` (the model with its own remote code, trust_remote_code=True);
- `space_app.py`: `ppt_tools/demo.py` as it is, and the modules it imports beside it (`ppt_tools/core/cost.py`,
  `ppt_tools/core/timing.py`, `ppt_tools/analysis/token_maps.py`, and `modeling_ppt_deit/`, which the cost model reads);
- `requirements.txt`: the versions installed where the folder was written (those the tests ran with);
- `README.md`: the Space card (`sdk: gradio`, `models: [<model repo>]`);
- `examples/`: the model repo's example images (its evaluation images), else, for an ImageNet classifier,
  scikit-learn's two sample photos.

`evaluation_examples` picks those example images from the evaluation split of the dataset a model was trained on
(`publish` stores them in the model repo, where the card's widget points at them).
"""

from __future__ import annotations

import io
import os
import shutil
from importlib import metadata
from pathlib import Path

from huggingface_hub import SpaceCardData
from PIL import Image

from ppt_tools.core.data import DIGITS, load_image_dataset, prepare_data
from ppt_tools.core.results import atomic_folder, replaceable_folder


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
    "ppt_tools/analysis/token_maps.py": "ppt_tools/analysis/token_maps.py",
    "modeling_ppt_deit/__init__.py": "modeling_ppt_deit/__init__.py",
    "modeling_ppt_deit/configuration_ppt_deit.py": "modeling_ppt_deit/configuration_ppt_deit.py",
    "modeling_ppt_deit/modeling_ppt_deit.py": "modeling_ppt_deit/modeling_ppt_deit.py",
    "modeling_ppt_deit/token_ops.py": "modeling_ppt_deit/token_ops.py",
}
SPACE_TOP_LEVEL = {"app.py", "requirements.txt", "README.md", EXAMPLES_DIR,
                   *(name.split("/")[0] for name in SPACE_CODE)}
SPACE_REQUIRED = ("app.py", "requirements.txt", "README.md", "space_app.py")
# What running the app in the folder leaves there (gradio's cache, bytecode): a Space folder may hold them.
SPACE_RUNTIME_LEFTOVERS = {".gradio", "__pycache__", "flagged"}
# What the Space installs, pinned to the versions here (distribution names).
SPACE_REQUIREMENTS = ("torch", "transformers", "huggingface_hub", "safetensors", "gradio", "matplotlib", "numpy",
                      "pillow", "tqdm")
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"

APP_TEMPLATE = '''"""PPT (token Pruning & Pooling) demo for the model {model_repo_id}: see README.md."""

import os
from pathlib import Path

from space_app import build_demo


# The model, with its own remote code (trust_remote_code=True). PPT_DEMO_CHECKPOINT serves another checkpoint (a
# local folder or repo id) with this Space's code, e.g. to try the Space locally before pushing it.
MODEL = os.environ.get("PPT_DEMO_CHECKPOINT", "{model_repo_id}")
demo = build_demo(MODEL, examples=Path(__file__).parent / "examples", title=MODEL)

if __name__ == "__main__":
    demo.launch(max_file_size="25mb")
'''

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
    return set(SPACE_REQUIRED) <= names <= SPACE_TOP_LEVEL | SPACE_RUNTIME_LEFTOVERS


def check_space_dir(output_dir) -> Path:
    """`output_dir` resolved (a symlink followed); `SpaceFolderError` if it holds anything but a previous Space."""
    return replaceable_folder(output_dir, is_space_folder, "space folder",
                              f"a Space this tool wrote (which holds only {sorted(SPACE_TOP_LEVEL)})",
                              "writing the Space replaces its content", error=SpaceFolderError)


def sample_photos() -> list[tuple[str, Image.Image]]:
    """scikit-learn's two bundled photos (a pagoda, a flower): examples for an ImageNet classifier."""
    from sklearn.datasets import load_sample_image

    return [(name, Image.fromarray(load_sample_image(name))) for name in ("china.jpg", "flower.jpg")]


def space_card(model_repo_id: str, title: str | None = None) -> str:
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
    return SPACE_CARD_TEMPLATE.format(card_data=data.to_yaml(), model_repo_id=model_repo_id)


def write_space_folder(output_dir, model_repo_id: str, examples=None, num_labels: int | None = None,
                       title: str | None = None) -> Path:
    """Write the Space folder for the model repo `model_repo_id` (contents in the module docstring); return it.

    Args:
        output_dir: new, empty, or a Space this function wrote (replaced as a whole, via a folder built beside it:
            an error leaves nothing half-written). Anything else is refused (`SpaceFolderError`).
        model_repo_id: the Hub model repo the Space serves.
        examples: a folder of example images (the model export's `examples/`), copied as they are.
        num_labels: the model's classes; without example images, a 1000-class (ImageNet) model gets scikit-learn's
            two sample photos, any other none (photos would not fit its task).
        title: the Space's title.
    """
    output_dir = check_space_dir(output_dir)
    with atomic_folder(output_dir) as staging:
        (staging / "app.py").write_text(APP_TEMPLATE.format(model_repo_id=model_repo_id), encoding="utf-8")
        (staging / "requirements.txt").write_text("\n".join(installed_requirements()) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(space_card(model_repo_id, title), encoding="utf-8")
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


# ---- example images of a model repo ---------------------------------------------------------------------------------


def evaluation_examples(training_info: dict, count: int = 4) -> list[tuple[str, Image.Image]]:
    """Up to `count` images of the evaluation split of the dataset `training_info` names (`dataset`, a local
    dataset folder that still exists, or train.py's "scikit-learn digits"), one per class in order of appearance:
    `(title, image)`, the title being the label name. Columns and split follow the rules train.py used
    (`ppt_tools.core.data.prepare_data`), with the columns and the split it recorded.

    Raises whatever loading the dataset raises (offline, not found, no image column): the caller decides.
    """
    name = training_info.get("dataset")
    local = training_info.get("dataset_name")  # train.py names a local dataset folder here (and no `dataset`)
    if local == "scikit-learn digits" or name == DIGITS:
        name = DIGITS
    elif not name and local and os.path.isdir(os.path.expanduser(local)):
        name = local
    if not name:
        return []
    # A Hub dataset is streamed: a few rows are read, not the whole set (ImageNet is 150 GB).
    dataset = load_image_dataset(name, training_info.get("dataset_config"),
                                 streaming=name != DIGITS and not os.path.isdir(os.path.expanduser(name)))
    eval_split = training_info.get("eval_split")
    data = prepare_data(dataset, dataset_name=name, image_column_name=training_info.get("image_column"),
                        label_column_name=training_info.get("label_column"),
                        # a split held out of the training split ("train (held out 15%)") is drawn again
                        eval_split_name=eval_split if eval_split in dataset else None,
                        check_all_images=False, need_train=False)
    examples, seen = [], set()
    for row in data.eval:
        label = row[data.label_column]
        if label in seen:
            continue
        seen.add(label)
        examples.append((data.label_names[label], row[data.image_column].convert("RGB")))
        if len(examples) == count:
            break
    return examples


def save_examples(folder: Path, examples: list[tuple[str, Image.Image]]) -> list[str]:
    """Write `examples` as PNG files `<number>_<title>.png` in `folder`; return the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index, (title, image) in enumerate(examples):
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in title)[:40] or "image"
        name = f"{index}_{safe}.png"
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        (folder / name).write_bytes(buffer.getvalue())
        names.append(name)
    return names
