# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Result files and tables: the one JSON / CSV / text writer (a temporary file, then a rename, so a failure never
leaves half a file), the reader of JSON result files, the names of the files a training run leaves, the machine
a measurement ran on, and plain-text / markdown tables.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import platform
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
import transformers

from .timing import load_average


# What a train.py run folder holds besides the model (HF examples' names). `ALL_RESULTS_FILE` is written last:
# a folder without it is an unfinished run. train.py writes these, model_card reads them.
ALL_RESULTS_FILE = "all_results.json"
TRAIN_RESULTS_FILE = "train_results.json"
EVAL_RESULTS_FILE = "eval_results.json"
TRAINING_INFO_FILE = "training_info.json"  # dataset, split, base model, recipe: the card's training section


# ---- writing --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` to write to; on success it replaces `path`, on failure it is removed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def write_text(path, text: str) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8", newline="") as stream:
        stream.write(text)


def json_ready(value):
    """`value` in plain JSON: non-finite floats as the strings "inf" / "-inf" / "nan" (JSON has no such numbers
    and the Hub's parser rejects the `Infinity` literal), tensors as lists, objects with `to_dict` as dicts."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, torch.Tensor):
        return json_ready(value.tolist())
    if hasattr(value, "to_dict"):
        return json_ready(value.to_dict())
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def write_json(path, data) -> None:
    write_text(path, json.dumps(json_ready(data), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_csv(path, rows: list[dict]) -> None:
    """Rows of flat dicts; the header is the union of their keys, in first-seen order."""
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows([{key: json_ready(value) for key, value in row.items()} for row in rows])
    write_text(path, buffer.getvalue())


def check_output_dir(path: str | None) -> None:
    """The results folder must be a folder, or creatable as one (its nearest existing parent a writable folder)."""
    if path is None:
        return
    existing = path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "exists and is not a directory" if existing == path else f"cannot be created: {existing!r} is a file"
        raise ValueError(f"--output_dir {path!r} {what}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output_dir {path!r}: {existing!r} is not writable")


# ---- reading --------------------------------------------------------------------------------------------------


def read_json_object(path, what: str) -> dict:
    """The JSON object in `path`; a `ValueError` naming `what` and the path if it is missing, not JSON, or not an
    object."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:  # (nested past the parser's depth)
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {error}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{what} {str(path)!r} must hold a JSON object, got {type(content).__name__}")
    return content


# ---- the machine ------------------------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device | str = "cpu") -> dict:
    """What a measurement ran on, and how busy it was when it started (1-minute load average; the measuring
    command adds `load_average_after` when it is done: `machine_done`)."""
    device = torch.device(device)
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_before": load_average(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def machine_done(info: dict) -> dict:
    """`info` (from `machine_info`) with the load average read now, when the measurement is over."""
    info["load_average_after"] = load_average()
    return info


def describe_machine(info: dict) -> str:
    """One line: CPU, logical CPUs, torch threads, device (and GPU), versions, load average before -> after."""
    gpu = f", {info['gpu']}" if info.get("gpu") else ""
    loads = [info.get(key) for key in ("load_average_before", "load_average_after") if key in info]
    load = ", load " + " -> ".join(fmt(value) for value in loads) if loads else ""
    return (f"{info['cpu']} ({info['logical_cpus']} logical CPUs, torch threads {info['torch_threads']}, "
            f"device {info['device']}{gpu}), torch {info['torch']}, transformers {info['transformers']}{load}")


# ---- tables -----------------------------------------------------------------------------------------------------


def fmt(value, spec: str = ".2f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_table(headers: list[str], rows: list[list], align_left: int = 1) -> str:
    """A plain-text table; the first `align_left` columns are left-aligned, the rest right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(v.ljust(w) if i < align_left else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(row) for row in cells[1:]])


def markdown_table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


__all__ = [
    "ALL_RESULTS_FILE",
    "EVAL_RESULTS_FILE",
    "TRAINING_INFO_FILE",
    "TRAIN_RESULTS_FILE",
    "atomic_path",
    "check_output_dir",
    "cpu_name",
    "describe_machine",
    "fmt",
    "format_table",
    "json_ready",
    "machine_done",
    "machine_info",
    "markdown_table",
    "read_json_object",
    "write_csv",
    "write_json",
    "write_text",
]
