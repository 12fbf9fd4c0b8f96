# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Run train.py's `main` with a callback that, at the end of training, writes what each rank holds into
`<digest_dir>/rank<i>.json` (a digest of its weights, its step, whether it is the process that writes the output).
Launched by tests/test_train_distributed.py under `accelerate launch`:

    python tests/ddp_probe.py DIGEST_DIR train.py-options...
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import torch
from transformers import TrainerCallback


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (names and bytes, sorted by name): equal iff the weights are equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class DigestCallback(TrainerCallback):
    def __init__(self, directory: str):
        self.directory = directory

    def on_train_end(self, args, state, control, model=None, **kwargs):
        os.makedirs(self.directory, exist_ok=True)
        record = {"process_index": args.process_index, "world_size": args.world_size,
                  "global_step": state.global_step, "weights_sha256": weights_digest(model),
                  "is_world_process_zero": state.is_world_process_zero}
        with open(os.path.join(self.directory, f"rank{args.process_index}.json"), "w", encoding="utf-8") as handle:
            json.dump(record, handle)


if __name__ == "__main__":
    from helpers import train_script  # this file's folder, tests/, is first on sys.path

    train_script().main(sys.argv[2:], callbacks=[DigestCallback(sys.argv[1])])
