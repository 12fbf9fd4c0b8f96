# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""train.py under `accelerate launch` with two CPU processes: both ranks end with the same weights, only rank 0
writes the output folder.

accelerate 1.x starts several CPU processes only through torchrun (`--multi_gpu`) or MPI: `accelerate launch --cpu
--num_processes 2` runs a single process. With `--multi_gpu` on a machine without GPUs and `--use_cpu True`,
torchrun starts two processes that train with DDP over gloo (accelerate's MULTI_CPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ddp_probe import weights_digest
from helpers import FAST_TRAINING_ARGS, TINY_MODEL_ARGS, TINY_PPT_ARGS, free_port

from modeling_ppt_deit import PPTDeiTForImageClassification


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path, cifar100_path):
    dataset = cifar100_path
    out, digests = tmp_path / "out", tmp_path / "digests"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", str(free_port()),
        str(ROOT / "tests" / "ddp_probe.py"), str(digests),
        "--dataset_name", dataset, "--output_dir", str(out), *TINY_MODEL_ARGS, *TINY_PPT_ARGS, *FAST_TRAINING_ARGS,
        "--max_steps", "4", "--gradient_accumulation_steps", "2",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": "",
           "TMPDIR": str(tmp_path)}  # torchelastic's run folders go here, not into /tmp for good
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    ranks = [json.loads((digests / f"rank{index}.json").read_text()) for index in range(2)]
    assert [rank["world_size"] for rank in ranks] == [2, 2]
    assert [rank["global_step"] for rank in ranks] == [4, 4]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert [rank["is_world_process_zero"] for rank in ranks] == [True, False]

    # The folder rank 0 wrote holds those very weights, and is complete.
    saved = PPTDeiTForImageClassification.from_pretrained(out)
    assert weights_digest(saved) == ranks[0]["weights_sha256"]
    results = json.loads((out / "all_results.json").read_text())
    assert results["train_global_step"] == 4 and results["eval_samples"] == 24
    assert completed.stdout.count("model saved to") == 1  # one table, from rank 0
    # nothing hidden inside but the manifest of what was written, and no staging folder or lock left beside it
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(".")) == [".ppt-manifest.json"]
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".out")]
