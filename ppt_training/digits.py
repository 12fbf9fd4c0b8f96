# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""scikit-learn's bundled handwritten digits as a `datasets` image-classification dataset (offline, no download).

1797 grayscale 8x8 images with 17 grey levels (0..16), upscaled to RGB PIL images so that a DeiT with patch size 4
sees them as a 32x32 picture of 64 patches. The result has one `train` split, like many user datasets: train.py
holds out its evaluation split with a fixed seed, through the same code path as any other dataset.
"""

from __future__ import annotations

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features
from datasets import Image as ImageFeature
from PIL import Image


def digit_images(size: int = 32) -> tuple[list[Image.Image], list[int]]:
    """The 1797 digits as RGB PIL images of `size` x `size` (bicubic upscaling) and their labels 0..9."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn: no network

    digits = load_digits()
    grey = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)  # [1797, 8, 8]
    images = [Image.fromarray(array, mode="L").resize((size, size), Image.BICUBIC).convert("RGB") for array in grey]
    return images, [int(label) for label in digits.target]


def load_digits_dataset(size: int = 32) -> DatasetDict:
    """`DatasetDict({"train": Dataset})` with columns `image` (Image) and `label` (ClassLabel "0".."9")."""
    images, labels = digit_images(size)
    features = Features({"image": ImageFeature(), "label": ClassLabel(names=[str(digit) for digit in range(10)])})
    return DatasetDict({"train": Dataset.from_dict({"image": images, "label": labels}, features=features)})
