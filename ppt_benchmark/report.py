# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""Machine description and output of benchmark results: console tables, JSON, CSV, markdown."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import tempfile

import torch


def machine_info(device: torch.device | str = "cpu") -> dict:
    """What the numbers were measured on."""
    device = torch.device(device)
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


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


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a temporary path in `path`'s directory to write to; on success it replaces `path`, on failure it is
    removed, so a failed run never leaves half a file."""
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


def atomic_write_text(path: str, text: str) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as stream:
        stream.write(text)


def write_json(path: str, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, float) and value != value:
        return None
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return str(value)


def write_csv(path: str, rows: list[dict]) -> None:
    """Rows of flat dicts; the header is the union of their keys, in first-seen order."""
    fields: list[str] = []
    for row in rows:
        fields += [key for key in row if key not in fields]
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def fmt(value, spec: str = ".2f", none: str = "-") -> str:
    if value is None:
        return none
    return format(value, spec)


__all__ = ["atomic_path", "atomic_write_text", "fmt", "format_table", "machine_info", "markdown_table", "write_csv", "write_json"]
