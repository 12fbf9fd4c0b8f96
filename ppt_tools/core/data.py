# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Image-classification datasets for training and evaluation: loading, the split rule, columns, labels, images.

train.py, benchmark.py and the analysis tools load data through these functions only, so that the same dataset
name always means the same images.

**The split rule.** The evaluation split is `eval_split_name` when given; otherwise the first of `test`,
`validation`, `valid`, `val`, `eval` that the dataset has; otherwise `eval_split_ratio` of the training split,
held out with `split_seed` (stratified by label when every class has two rows or more). The training split is
`train_split_name` minus that held-out part.

Sources: a Hub dataset id, a `save_to_disk` folder (a Dataset or a DatasetDict), a local folder that `datasets`
reads as it is (an `imagefolder` directory of class sub-folders, parquet shards such as `data/validation-*.parquet`),
or `digits`: scikit-learn's bundled handwritten digits (offline, no download), with a fixed 20% test split.

**Streaming** (`streaming=True`): the splits are `datasets.IterableDataset`s, read and decoded as they are consumed,
so memory stays flat however large the split (ImageNet's 50,000 validation images, say). The split rule is the
same, except that a stream cannot be split at random: a dataset without an evaluation split needs
`eval_split_name`. A stream is checked in two steps with the checks of map-style data (`check_labels`,
`check_image`): the head of each split (its first `STREAM_HEAD_ROWS` rows: columns, labels, images) before any
work, then every row as it is read (`ImageClassificationData.checked_stream`), each row named by its file (shard)
and its row in that file, whichever process reads it.

`evaluation_examples` picks a few images of the evaluation split a run recorded (its training_info.json), one
per class, for the exported model's widget and the demo.

Everything that can be wrong with a dataset raises a `ValueError` that names what exists (splits, columns, label
range, the undecodable image), before any training or measurement starts.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, IterableDataset, IterableDatasetDict
from datasets import Image as ImageFeature
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from PIL import Image
from tqdm.auto import tqdm


DEFAULT_TRAIN_SPLIT = "train"  # --train_split_name when not given
EVAL_SPLIT_CANDIDATES = ("test", "validation", "valid", "val", "eval")
# Datasets with several candidate columns (CIFAR-100 has fine_label and coarse_label): the columns meant.
KNOWN_COLUMNS = {
    "uoft-cs/cifar100": ("img", "fine_label"),
    "cifar100": ("img", "fine_label"),
    "uoft-cs/cifar10": ("img", "label"),
    "cifar10": ("img", "label"),
}
PREFERRED_LABEL_NAMES = ("label", "labels", "fine_label")

# scikit-learn's digits: 1797 images, 20% held out as the test split with this seed (stratified by digit).
DIGITS = "digits"
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 42

# A stream's rows read and checked (columns, labels, images) before any training or measurement starts.
STREAM_HEAD_ROWS = 16
# The column a checked stream adds: where each row comes from ("file '...', row N"), for the messages.
SOURCE_COLUMN = "__source__"


class DataError(ValueError):
    """A row that cannot be used (no image, an image that does not decode, a label outside the classes, a file that
    cannot be read), named by split, file and row."""


def looks_like_local_path(text: str) -> bool:
    """True for what can only be a local path: it exists, starts with '.', '/' or '~', has a Windows separator, or
    is not a valid Hub repo id ('name' or 'namespace/name'). Anything else is taken for a Hub id."""
    if os.path.exists(os.path.expanduser(text)) or text.startswith((".", "/", "~")):
        return True
    if any(sep in text for sep in (os.sep, os.altsep) if sep and sep != "/"):
        return True
    try:
        validate_repo_id(text)
    except HFValidationError:
        return True
    return False


# ---- loading ------------------------------------------------------------------------------------------------------


def digit_images(size: int = 32) -> tuple[list[Image.Image], list[int]]:
    """scikit-learn's 1797 digits (8x8, 17 grey levels) as RGB PIL images of `size` x `size` (bicubic) and their
    labels 0..9."""
    # Bundled with scikit-learn (no network). Imported here: scikit-learn takes a while to import, and only this
    # dataset needs it.
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # [1797, 8, 8]
    images = [Image.fromarray(array, mode="L").resize((size, size), Image.BICUBIC).convert("RGB") for array in grey]
    return images, [int(label) for label in digits.target]


def load_digits_dataset(size: int = 32) -> DatasetDict:
    """The digits as `DatasetDict({"train", "test"})` with columns `image` (Image) and `label` (ClassLabel)."""
    images, labels = digit_images(size)
    features = datasets.Features({"image": ImageFeature(), "label": ClassLabel(names=[str(d) for d in range(10)])})
    full = Dataset.from_dict({"image": images, "label": labels}, features=features)
    split = full.train_test_split(test_size=DIGITS_TEST_FRACTION, seed=DIGITS_SPLIT_SEED, stratify_by_column="label")
    return DatasetDict({"train": split["train"], "test": split["test"]})


def is_saved_dataset(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, name)) for name in ("dataset_dict.json", "state.json"))


def load_image_dataset(name: str, config_name: str | None = None, cache_dir: str | None = None,
                       digits_size: int = 32, streaming: bool = False) -> DatasetDict | IterableDatasetDict:
    """`name`: a Hub dataset id, a `save_to_disk` folder, a local folder `datasets` reads (imagefolder, parquet
    shards), or `digits` (at `digits_size` px; a local folder called "digits" must be given as `./digits`). With
    `streaming`, every split is an `IterableDataset`."""
    if name == DIGITS:
        return _as_streams(load_digits_dataset(digits_size)) if streaming else load_digits_dataset(digits_size)
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        if is_saved_dataset(path):
            try:
                loaded = datasets.load_from_disk(path)
            except Exception as error:  # datasets raises several types for a damaged folder
                raise ValueError(f"dataset folder {name!r} cannot be read ({type(error).__name__}: {error})") from None
            loaded = DatasetDict({"train": loaded}) if isinstance(loaded, Dataset) else loaded
            return _as_streams(loaded) if streaming else loaded
        return _load_local_folder(name, path, cache_dir, streaming)
    if os.path.exists(path):
        raise ValueError(
            f"dataset {name!r} is a file; give a dataset folder (save_to_disk output, an imagefolder directory of "
            "class sub-folders, parquet shards), a Hub dataset id, or 'digits'"
        )
    if looks_like_local_path(name):
        raise ValueError(f"dataset path {name!r} does not exist")
    try:
        loaded = datasets.load_dataset(name, config_name, cache_dir=cache_dir, streaming=streaming)
    except Exception as error:  # the Hub client raises many types (offline, 404, gated...)
        raise ValueError(
            f"could not load dataset {name!r} from the Hugging Face Hub ({type(error).__name__}: {error}). "
            "If it is meant to be a local folder, that folder does not exist."
        ) from error
    if isinstance(loaded, (Dataset, IterableDataset)):
        return (IterableDatasetDict if streaming else DatasetDict)({"train": loaded})
    return loaded


def _as_streams(dataset: DatasetDict) -> IterableDatasetDict:
    return IterableDatasetDict({name: split.to_iterable_dataset() for name, split in dataset.items()})


def _load_local_folder(name: str, path: str, cache_dir: str | None, streaming: bool):
    """A folder `datasets` reads by its files: an imagefolder directory of class sub-folders, parquet shards, ..."""
    try:
        return datasets.load_dataset(path, cache_dir=cache_dir, streaming=streaming)
    except Exception as error:  # an empty folder, class folders without images, unreadable files
        raise ValueError(
            f"dataset folder {name!r} is neither a save_to_disk folder nor a folder of data files that datasets "
            f"reads (an imagefolder directory of class sub-folders with images, parquet shards) "
            f"({type(error).__name__}: {error})"
        ) from None


def num_rows(split) -> int | None:
    """The rows of a split: its length, or for a stream what the dataset's info says (None when it says nothing)."""
    if isinstance(split, Dataset):
        return len(split)
    info = split.info.splits.get(split.split) if split.info is not None and split.info.splits else None
    return None if info is None else info.num_examples


# ---- columns and labels ---------------------------------------------------------------------------------------------


def choose_column(features: datasets.Features, wanted: str | None, kind: str, feature_type, preferred=()) -> str:
    """The column named `wanted`, else the only column of `feature_type`, else a preferred name among several
    (or, with none of that type, a preferred name: a plain integer `label` column)."""
    described = ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())
    if wanted is not None:
        if wanted not in features:
            raise ValueError(f"{kind} column {wanted!r} not found; the dataset has columns: {described}")
        return wanted
    candidates = [name for name, feature in features.items() if isinstance(feature, feature_type)]
    if len(candidates) == 1:
        return candidates[0]
    preferred_found = [name for name in preferred if name in (candidates or features)]
    if preferred_found:
        return preferred_found[0]
    if not candidates:
        raise ValueError(
            f"no {feature_type.__name__} column found for the {kind}s; pass --{kind}_column_name. "
            f"The dataset has columns: {described}"
        )
    raise ValueError(
        f"several {feature_type.__name__} columns could be the {kind}s: {candidates}; pass --{kind}_column_name"
    )


def label_names_of(label_column: str, *splits: Dataset) -> list[str]:
    """ClassLabel names (of the first split), or "0".."max" for a plain integer column, the max taken over all
    `splits`: a class the training split happens to lack is still a class the model must be able to predict."""
    feature = splits[0].features[label_column]
    if isinstance(feature, ClassLabel):
        return list(feature.names)
    if isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint")):
        largest = max((int(np.max(split[label_column])) for split in splits if len(split)), default=-1)
        return [str(index) for index in range(largest + 1)]
    raise ValueError(f"label column {label_column!r} has type {feature}; it must be a ClassLabel or an integer column")


def check_labels(labels, num_labels: int, where: str, rows=None) -> None:
    """Raise `DataError` naming the labels outside `0 .. num_labels - 1` (a model with `num_labels` classes can
    never predict them: counted silently as wrong, they would only lower the accuracy), or a row without one.
    `rows`: how to name each row ("file 'x.parquet', row 5"), when the labels are not rows 0, 1... of `where`."""
    labels = list(labels.reshape(-1).tolist()) if hasattr(labels, "reshape") else list(labels)

    def row_name(index: int) -> str:
        return rows[index] if rows is not None else f"row {index}"

    empty = [index for index, label in enumerate(labels) if label is None]
    if empty:
        raise DataError(f"{where}, {row_name(empty[0])}: the label is empty ({len(empty)} of {len(labels)} rows)")
    labels = np.asarray(labels, dtype=np.int64)  # small integer types (int16, uint8) are class ids too
    bad = (labels < 0) | (labels >= num_labels)
    if bad.any():
        values = sorted({int(value) for value in labels[bad]})
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        unlabelled = values == [-1]
        raise DataError(
            f"{where} has labels outside the classes 0 to {num_labels - 1} (num_labels={num_labels}): {shown} "
            f"({int(bad.sum())} of {labels.size} rows, the first at {row_name(int(np.flatnonzero(bad)[0]))})"
            + ("; -1 marks an unlabelled split (ImageNet's test split, say): evaluate another with --eval_split_name"
               if unlabelled else "")
        )


def check_image(item, image_column: str, where: str) -> Image.Image:
    """The image of one row, decoded (`item`: a PIL image, or `{"bytes", "path"}` as stored); raise `DataError`
    naming `where` when it is missing or cannot be decoded."""
    if item is None:
        raise DataError(f"{where}: the {image_column!r} column is empty")
    if isinstance(item, Image.Image):
        return item
    try:
        source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
        image = Image.open(source)
        image.load()
        return image
    except Exception as error:
        raise DataError(f"{where}: image ({item.get('path') or 'embedded bytes'}) cannot be decoded: "
                        f"{type(error).__name__}: {error}") from error


def check_images(dataset: Dataset, image_column: str, split: str, first_row: int = 0) -> None:
    """Decode every image once, so that a corrupt file fails here and not in the middle of an epoch. `first_row`:
    the row number of `dataset`'s first row in the split (when checking part of it), for the messages."""
    raw = dataset.cast_column(image_column, ImageFeature(decode=False))
    for row, item in enumerate(tqdm(raw[image_column], desc=f"checking {split} images", leave=False), first_row):
        check_image(item, image_column, f"split {split!r}, row {row}").close()


# ---- streams: every row named by its file -------------------------------------------------------------------------


def _shard_names(split: IterableDataset) -> list[str]:
    """How to name each shard of a stream: its file when the source says (parquet shards, images), else its
    number."""
    names = []
    for index in range(split.num_shards):
        iterable = split.shard(num_shards=split.num_shards, index=index)._ex_iterable
        while hasattr(iterable, "ex_iterable"):
            iterable = iterable.ex_iterable
        files = getattr(iterable, "kwargs", {}).get("files")
        files = files if isinstance(files, (list, tuple)) else []
        names.append(f"file {str(files[0])!r}" if len(files) == 1 else f"shard {index + 1} of {split.num_shards}")
    return names


def _rows_with_sources(shards, split, names, columns, split_name):
    """The rows of `shards` (indices into `split`'s shards), each with its source; a shard that cannot be read (a
    truncated file, a file whose columns differ) raises `DataError` naming it."""
    for index in shards:
        row = -1
        try:
            for row, example in enumerate(split.shard(num_shards=split.num_shards, index=index)):
                yield {**{column: example.get(column) for column in columns},
                       SOURCE_COLUMN: f"{names[index]}, row {row}"}
        except DataError:
            raise
        except Exception as error:  # pyarrow, datasets and fsspec raise many types
            after = f" after row {row}" if row >= 0 else ""
            raise DataError(f"split {split_name!r}: {names[index]} cannot be read{after}: "
                            f"{type(error).__name__}: {error}") from error


def with_sources(split: IterableDataset, split_name: str, image_column: str, label_column: str) -> IterableDataset:
    """`split` (a stream) as a stream of `image_column` (images still encoded), `label_column` (int64) and
    `SOURCE_COLUMN`: the file and row each row comes from. It keeps `split`'s shards (so that shuffling, workers and
    processes share it out as before) and its order."""
    raw = split.cast_column(image_column, ImageFeature(decode=False))
    features = datasets.Features({image_column: ImageFeature(decode=False), label_column: datasets.Value("int64"),
                                  SOURCE_COLUMN: datasets.Value("string")})
    # datasets shares out every list in gen_kwargs as shards: only `shards` is a list, the rest tuples.
    return IterableDataset.from_generator(
        _rows_with_sources, features=features,
        gen_kwargs={"shards": list(range(raw.num_shards)), "split": raw, "names": tuple(_shard_names(raw)),
                    "columns": (image_column, label_column), "split_name": split_name})


def check_stream_batch(batch: dict, image_column: str, label_column: str, num_labels: int, split_name: str) -> dict:
    """A batch of `with_sources` rows with its labels checked and its images decoded (`check_labels`,
    `check_image`); raises `DataError` naming the split, file and row of the first bad one."""
    sources = batch[SOURCE_COLUMN]
    check_labels(batch[label_column], num_labels, f"split {split_name!r}", rows=sources)
    images = [check_image(item, image_column, f"split {split_name!r}, {source}")
              for item, source in zip(batch[image_column], sources)]
    return {**batch, image_column: images}


def check_stream_head(split: IterableDataset, split_name: str, image_column: str, label_column: str,
                      num_labels: int, rows: int = STREAM_HEAD_ROWS) -> None:
    """Read the first `rows` rows of a stream and check them as every row will be (columns, labels, images), so
    that a stream unfit for the task fails before any work; an empty split is refused."""
    head = [row for _, row in zip(range(rows), with_sources(split, split_name, image_column, label_column))]
    if not head:
        raise DataError(f"split {split_name!r} is empty")
    batch = {column: [row[column] for row in head] for column in head[0]}
    for image in check_stream_batch(batch, image_column, label_column, num_labels, split_name)[image_column]:
        image.close()


# ---- splits ---------------------------------------------------------------------------------------------------------


def select_splits(dataset, train_split_name: str = DEFAULT_TRAIN_SPLIT, eval_split_name: str | None = None,
                  eval_split_ratio: float = 0.15, split_seed: int = 42, label_column: str | None = None,
                  need_train: bool = True) -> tuple:
    """`(train, eval, eval split's name)` by the split rule of the module docstring. With `need_train=False`
    (evaluation only) a dataset may have no training split, and `train` is then None."""
    splits = list(dataset.keys())
    if eval_split_name is not None and eval_split_name not in dataset:
        raise ValueError(f"eval split {eval_split_name!r} not found; the dataset has splits: {splits}")
    if eval_split_name is None:
        eval_split_name = next((name for name in EVAL_SPLIT_CANDIDATES if name in dataset and name != train_split_name),
                               None)
    if eval_split_name is not None:
        # Evaluation alone may go without a training split, but one named on purpose must exist.
        if train_split_name not in dataset and (need_train or train_split_name != DEFAULT_TRAIN_SPLIT):
            raise ValueError(f"train split {train_split_name!r} not found; the dataset has splits: {splits}")
        return dataset.get(train_split_name), dataset[eval_split_name], eval_split_name
    if train_split_name not in dataset:
        raise ValueError(f"train split {train_split_name!r} not found and no evaluation split either; the dataset "
                         f"has splits: {splits} (name one with --eval_split_name)")
    train = dataset[train_split_name]
    if isinstance(train, IterableDataset):
        raise ValueError(f"the dataset has no evaluation split (splits: {splits}) and a stream cannot be split at "
                         "random: name one with --eval_split_name, or drop --streaming to hold out part of train")
    if not 0 < eval_split_ratio < 1:
        raise ValueError(f"eval_split_ratio={eval_split_ratio} must be in (0, 1)")
    if len(train) < 2:
        raise ValueError(f"train split {train_split_name!r} has {len(train)} rows: too few to hold some out")
    try:  # stratified, so that small datasets keep every class on both sides
        held_out = train.train_test_split(test_size=eval_split_ratio, seed=split_seed, stratify_by_column=label_column)
    except ValueError:  # a class with a single row, or a label column that is not a ClassLabel
        held_out = train.train_test_split(test_size=eval_split_ratio, seed=split_seed)
    return held_out["train"], held_out["test"], f"{train_split_name} (held out {eval_split_ratio:.0%})"


@dataclass
class ImageClassificationData:
    """The two splits (map-style `Dataset`s, or `IterableDataset`s when streaming) and what a model needs to know
    about them. `train` is None when only evaluation was asked for and the dataset has no training split."""

    train: Dataset | IterableDataset | None
    eval: Dataset | IterableDataset
    image_column: str
    label_column: str
    label_names: list[str]
    eval_split_name: str  # the split's name, or "<train> (held out N%)"
    train_split_name: str = DEFAULT_TRAIN_SPLIT
    # Streaming: {"train" / "eval": (the whole stream, the rows taken from it or None)}, for `checked_stream`.
    whole_streams: dict | None = None

    @property
    def streaming(self) -> bool:
        return isinstance(self.eval, IterableDataset)

    def checked_stream(self, which: str) -> IterableDataset:
        """The "train" or "eval" stream as `with_sources` gives it (images still encoded, each row named by its file
        and row), for a transform to check batch by batch with `check_stream_batch`."""
        split, count = self.whole_streams[which]
        name = self.train_split_name if which == "train" else self.eval_split_name
        stream = with_sources(split, name, self.image_column, self.label_column)
        return stream if count is None else stream.take(count)


def _features(split) -> datasets.Features:
    if split.features is None:  # a stream whose source declares none: read them off its first row
        split = split._resolve_features()
    return split.features


def prepare_data(
    dataset,
    *,
    dataset_name: str | None = None,
    image_column_name: str | None = None,
    label_column_name: str | None = None,
    train_split_name: str = DEFAULT_TRAIN_SPLIT,
    eval_split_name: str | None = None,
    eval_split_ratio: float = 0.15,
    split_seed: int = 42,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    check_all_images: bool = True,
    need_train: bool = True,
) -> ImageClassificationData:
    """Resolve columns and splits and check labels (and decode every image); raises `ValueError` on anything wrong.
    Streams are checked as far as that is possible without reading them whole: columns, label names and the head of
    each split now, every row as it is read (`ImageClassificationData.checked_stream`)."""
    known_image, known_label = KNOWN_COLUMNS.get(dataset_name or "", (None, None))
    if not dataset:
        raise ValueError(f"the dataset {dataset_name!r} has no splits")
    candidates = [dataset.get(train_split_name), dataset.get(eval_split_name), next(iter(dataset.values()))]
    reference = next(split for split in candidates if split is not None)
    features = _features(reference)
    try:
        image_column = choose_column(features, image_column_name or known_image, "image", ImageFeature)
    except ValueError as error:
        if dataset_name and os.path.isdir(dataset_name) and image_column_name is None:
            # datasets read a local folder without image files as another kind (text, csv...): say what it wants
            raise ValueError(f"{error} (the local folder {dataset_name!r} holds no images: an image folder has one "
                             "folder of images per class, e.g. train/cat/1.png)") from error
        raise
    label_column = choose_column(
        features, label_column_name or known_label, "label", ClassLabel, preferred=PREFERRED_LABEL_NAMES
    )
    if image_column == label_column:
        raise ValueError(f"image and label columns are both {image_column!r}")
    if not isinstance(features[image_column], ImageFeature):
        raise ValueError(f"image column {image_column!r} has type {features[image_column]}; it must be an Image feature")
    train, eval_split, eval_name = select_splits(
        dataset, train_split_name, eval_split_name, eval_split_ratio, split_seed, label_column, need_train
    )
    splits = [(name, split) for name, split in ((train_split_name, train), (eval_name, eval_split)) if split is not None]
    for name, split in splits:
        missing = [column for column in (image_column, label_column) if column not in _features(split)]
        if missing:
            raise ValueError(f"split {name!r} lacks column(s) {missing}; it has {list(_features(split))}")
    streaming = isinstance(eval_split, IterableDataset)
    if streaming:
        if not isinstance(features[label_column], ClassLabel):
            raise ValueError(f"label column {label_column!r} has type {features[label_column]}; a stream needs a "
                             "ClassLabel column, whose names give the classes (an integer column would need a full "
                             "pass to count them)")
        label_names = list(features[label_column].names)
    else:
        label_names = label_names_of(label_column, *[split for _, split in splits])
    if len(label_names) < 2:
        raise ValueError(f"label column {label_column!r} has {len(label_names)} class(es); need at least 2")
    whole_streams = None
    if streaming:
        whole_streams = {"train": (train, max_train_samples), "eval": (eval_split, max_eval_samples)}
        for name, split in splits:
            check_stream_head(split, name, image_column, label_column, len(label_names))
    train = _first(train, max_train_samples)
    eval_split = _first(eval_split, max_eval_samples)
    if not streaming:
        for name, split in ((train_split_name, train), (eval_name, eval_split)):
            if split is None:
                continue
            if len(split) == 0:
                raise ValueError(f"split {name!r} is empty")
            check_labels(split[label_column], len(label_names), f"split {name!r}")
            if check_all_images:
                check_images(split, image_column, name)
    return ImageClassificationData(train, eval_split, image_column, label_column, label_names, eval_name,
                                   train_split_name, whole_streams)


def _first(split, count: int | None):
    """The first `count` rows of a split (all of it when `count` is None)."""
    if split is None or count is None:
        return split
    if isinstance(split, IterableDataset):
        return split.take(count)
    return split.select(range(min(count, len(split))))


def load_prepared(args, *, digits_size: int = 32, check_all_images: bool = False, need_train: bool = False,
                  max_train_samples: int | None = None, cache_dir: str | None = None) -> ImageClassificationData:
    """`load_image_dataset` + `prepare_data` for a `DatasetArguments` (see `ppt_tools.core.arguments`). Evaluation
    (`need_train=False`, the default) works on datasets without a training split too."""
    raw = load_image_dataset(args.dataset_name, args.dataset_config_name, cache_dir, digits_size=digits_size,
                             streaming=args.streaming)
    return prepare_data(
        raw,
        dataset_name=args.dataset_name,
        image_column_name=args.image_column_name,
        label_column_name=args.label_column_name,
        train_split_name=args.train_split_name,
        eval_split_name=args.eval_split_name,
        eval_split_ratio=args.eval_split_ratio,
        split_seed=args.split_seed,
        max_train_samples=max_train_samples,
        max_eval_samples=args.max_eval_samples,
        check_all_images=check_all_images,
        need_train=need_train,
    )


# ---- example images ------------------------------------------------------------------------------------------------


def evaluation_examples(training_info: dict, count: int = 4) -> list[tuple[str, Image.Image]]:
    """Up to `count` images of the evaluation split of the dataset `training_info` names (`dataset`, a local
    dataset folder that still exists, or train.py's "scikit-learn digits"), one per class in order of appearance:
    `(title, image)`, the title being the label name. Columns and split follow the rules train.py used
    (`prepare_data`), with the columns and the split it recorded. The model export's widget and the demo show them.

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


def save_examples(folder, examples: list[tuple[str, Image.Image]]) -> list[str]:
    """Write `examples` as PNG files `<number>_<title>.png` in `folder` (a `Path`); return the file names."""
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


__all__ = [
    "DIGITS",
    "EVAL_SPLIT_CANDIDATES",
    "SOURCE_COLUMN",
    "STREAM_HEAD_ROWS",
    "DataError",
    "ImageClassificationData",
    "check_image",
    "check_images",
    "check_labels",
    "check_stream_batch",
    "check_stream_head",
    "choose_column",
    "digit_images",
    "evaluation_examples",
    "label_names_of",
    "load_digits_dataset",
    "load_image_dataset",
    "load_prepared",
    "looks_like_local_path",
    "num_rows",
    "prepare_data",
    "save_examples",
    "select_splits",
    "with_sources",
]
