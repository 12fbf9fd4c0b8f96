# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Run train.py's `main`, pausing inside the save of one checkpoint so that a test can kill the process there with
SIGKILL, at a known point. Launched by tests/test_run_safety.py:

    python tests/kill_probe.py PAUSE_STEP READY_FILE train.py-options...

At step PAUSE_STEP, once Trainer has written the weights and the optimizer of that checkpoint but not yet its RNG
states and trainer state, the probe writes the folder being written to READY_FILE and sleeps. Killed there, the job
leaves exactly what a job killed in the middle of a checkpoint save leaves.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    pause_step, ready_file, argv = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    sys.path.insert(0, str(ROOT))
    from helpers import train_script  # this file's folder, tests/, is first on sys.path

    train = train_script()

    save_rng_state = train.ImageTrainer._save_rng_state

    def pausing_save_rng_state(self, output_dir):
        if self.state.global_step == pause_step:
            ready_file.write_text(str(output_dir))
            time.sleep(600)  # the test kills the process here
        return save_rng_state(self, output_dir)

    train.ImageTrainer._save_rng_state = pausing_save_rng_state
    train.main(argv)


if __name__ == "__main__":
    main()
