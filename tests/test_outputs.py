# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The one output mechanism (`ppt_tools.core.outputs`), as every command that writes a folder uses it:

- a kill -9 at any file operation of a save leaves the old content or the new one, whole (each command, every
  operation: a forked child `os._exit`s just before its Nth file operation), and the next run cleans up;
- a second writer of the same folder, or a resume of a run that is still alive, is refused, naming the process;
- a Space or an export edited since it was written is never replaced (files hashed before and after);
- a weights file damaged after it was written is found when a tool loads the folder;
- a full disk is one line naming the folder, the old content whole.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hub_fixtures import REPO_ID, tiny_image_processor, tiny_trained_model, trained_export
from helpers import FAST_TRAINING_ARGS, ROOT, TINY_MODEL_ARGS, TINY_PPT_ARGS, train_script

from ppt_tools.core import outputs
from ppt_tools.core.outputs import FILES, FOLDER, MANIFEST_FILE, OutputBusyError, OutputError, OutputTarget
from ppt_tools.export import publish
from ppt_tools.export.space import write_space_folder


train = train_script()
KILLED = 137


# ---- helpers --------------------------------------------------------------------------------------------------------


def hashes(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file below `folder` (hidden ones too)."""
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def leftovers(parent: Path) -> list[str]:
    """What the output mechanism leaves only when a run is killed: staging, set-aside and lock files."""
    return sorted(path.name for path in parent.rglob(".*.ppt-*"))


WRITING_OPERATIONS = ("rename", "replace", "link", "unlink", "rmdir", "mkdir")


def patch_file_operations(before_each) -> list:
    """Call `before_each()` before every file operation (an open for writing, a mkdir, a rename, a link, an unlink, a
    removal, the exchange of two folders); returns what `restore_file_operations` puts back."""
    saved = [(os, name, getattr(os, name)) for name in (*WRITING_OPERATIONS, "open")]
    saved += [(shutil, "rmtree", shutil.rmtree), (builtins, "open", builtins.open), (io, "open", io.open),
              (outputs, "_exchange", outputs._exchange)]
    originals = {(id(module), name): function for module, name, function in saved}

    def counted(module, name):
        function = originals[(id(module), name)]

        def wrapper(*args, **kwargs):
            if name == "open" and module in (builtins, io):
                mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
                writing = any(flag in mode for flag in "wax+")
            elif name == "open":
                flags = args[1] if len(args) > 1 else kwargs["flags"]
                writing = bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            else:
                writing = True
            if writing:
                before_each()
            return function(*args, **kwargs)
        return wrapper

    for module, name, _ in saved:
        setattr(module, name, counted(module, name))
    return saved


def restore_file_operations(saved: list) -> None:
    for module, name, function in saved:
        setattr(module, name, function)


def run_killed_at(limit: int, action) -> int:
    """Run `action` in a forked child that exits as kill -9 would (no cleanup, no `finally`) just before its
    `limit`-th file operation; the child's exit code: KILLED, or 0 when `action` finished first."""
    pid = os.fork()
    if pid:
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    try:
        count = [0]

        def tick():
            count[0] += 1
            if count[0] >= limit:
                os._exit(KILLED)

        patch_file_operations(tick)
        action()
        os._exit(0)
    except BaseException:  # noqa: BLE001 (the child reports by its exit code)
        os._exit(1)


def kill_everywhere(action, check, max_operations: int = 400) -> int:
    """Kill -9 `action` (a forked child) before each of its file operations in turn, calling `check(limit)` after
    each kill; return the number of file operations (the loop ends when the action finishes before the kill)."""
    for limit in range(1, max_operations):
        code = run_killed_at(limit, action)
        if code == 0:
            return limit - 1
        assert code == KILLED, f"the action failed (exit {code}) with a kill at operation {limit}"
        check(limit)
    raise AssertionError("the action never finished")


def at_every_operation(action, workspace: Path, check, armed=lambda: True) -> int:
    """What a kill -9 just before each file operation of `action` would leave, faster than a process per kill: the
    disk as it is at that moment (the `workspace` folder, copied aside) is what the killed process would leave, and
    `check(copy, operation)` runs on the copy, as the next run would find it; only operations once `armed()` is
    true count. Returns the number of operations."""
    count, busy = [0], [False]
    scratch = workspace.parent / f"{workspace.name}-killed"

    def before_each():
        if busy[0] or not armed():
            return
        busy[0] = True
        restore_file_operations(saved)
        try:
            count[0] += 1
            if scratch.exists():
                shutil.rmtree(scratch)
            shutil.copytree(workspace, scratch, symlinks=True)
            check(scratch, count[0])
        finally:
            patch_again = patch_file_operations(before_each)
            saved[:] = patch_again
            busy[0] = False

    saved = patch_file_operations(before_each)
    try:
        action()
    finally:
        restore_file_operations(saved)
    shutil.rmtree(scratch, ignore_errors=True)
    return count[0]


# ---- kill -9 at every file operation -------------------------------------------------------------------------------


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_folder_replaced_by_a_process_killed_at_every_file_operation_is_old_or_new(tmp_path, monkeypatch, swap):
    """The mechanism itself, with real kills (a forked child that `os._exit`s before its Nth file operation), both
    ways to replace a folder: the atomic exchange, and renaming the old one aside first (where the file system
    cannot exchange), which the next run undoes if the kill came between the two renames."""
    if swap == "two renames":
        monkeypatch.setattr(outputs, "_exchange", lambda first, second: False)
    target = tmp_path / "out"
    old = write_old(target)
    new = {name: sha("new " + name) for name in ("a.txt", "b.txt", "c.txt")}

    def action():
        with OutputTarget(target, kind=FOLDER) as output, output.staging() as staging:
            for name in new:
                (staging / name).write_text("new " + name)

    def check(limit):
        if swap == "exchange":
            assert contents(target) in (old, new), f"killed at operation {limit}"
        with OutputTarget(target):  # what the next run does first
            pass
        assert contents(target) in (old, new), f"killed at operation {limit}"
        write_old(target)  # every kill replaces the old folder

    assert kill_everywhere(action, check) >= 8
    action()
    assert contents(target) == new and leftovers(tmp_path) == []


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def contents(folder: Path) -> dict[str, str]:
    return {name: digest for name, digest in hashes(folder).items() if name != MANIFEST_FILE}


def write_old(target: Path) -> dict[str, str]:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for name in ("a.txt", "b.txt"):
        (target / name).write_text("old " + name)
    return contents(target)


def test_publish_killed_at_every_file_operation_leaves_the_old_or_the_new_export(tmp_path):
    """must-fix 2: `publish E --output_dir E` killed between deleting the old export and moving the new one in left
    no export. Now E is the old export or the new one at every moment, and the next run cleans up and succeeds."""
    old_model, new_model = tiny_trained_model(steps=1), tiny_trained_model(seed=1, steps=1)
    reference = tmp_path / "reference"
    publish.export_folder(new_model, tiny_image_processor(), reference, results={"eval_accuracy": 0.5})
    workspace = tmp_path / "work"
    target = workspace / "export"
    publish.export_folder(old_model, tiny_image_processor(), target, results={"eval_accuracy": 0.5})
    old, new = hashes(target), hashes(reference)
    assert old["model.safetensors"] != new["model.safetensors"]

    def check(copy, operation):
        killed = copy / "export"
        assert hashes(killed) in (old, new), f"killed at operation {operation}: neither the old nor the new export"
        with OutputTarget(killed):  # what the next run does first
            pass
        assert hashes(killed) in (old, new) and set(leftovers(copy)) <= {".export.ppt-lock"}, f"operation {operation}"

    def action():
        publish.export_folder(new_model, tiny_image_processor(), target, results={"eval_accuracy": 0.5})

    assert at_every_operation(action, workspace, check) > 10
    assert hashes(target) == new and leftovers(tmp_path) == []


def test_space_killed_at_every_file_operation_leaves_the_old_or_the_new_space(tmp_path):
    workspace = tmp_path / "work"
    target = workspace / "space"
    write_space_folder(target, "someone/old-model")
    reference = write_space_folder(tmp_path / "reference", "someone/new-model")
    old, new = hashes(target), hashes(reference)

    def check(copy, operation):
        killed = copy / "space"
        assert hashes(killed) in (old, new), f"killed at operation {operation}"
        with OutputTarget(killed):
            pass
        assert hashes(killed) in (old, new) and set(leftovers(copy)) <= {".space.ppt-lock"}, f"operation {operation}"

    assert at_every_operation(lambda: write_space_folder(target, "someone/new-model"), workspace, check) > 10
    assert hashes(target) == new and leftovers(tmp_path) == []


def test_benchmark_killed_at_every_file_operation_keeps_old_or_new_results(tmp_path, tiny_checkpoint, monkeypatch):
    """The result files of benchmark.py (the same mechanism as the analysis commands'): after a kill, the next run
    first finishes a move that was complete on disk, or removes an unfinished one; the folder then holds the old
    results or the new ones, all three files of one run, and the manifest agrees with them."""
    from ppt_tools import benchmark

    workspace = tmp_path / "work"
    out = workspace / "bench"
    argv = ["--model_name_or_path", tiny_checkpoint, "--cost_only", "--output_dir", str(out), "--overwrite_output_dir"]
    assert benchmark.main(argv) == 0
    old = hashes(out)
    first, measured = benchmark.benchmark, {}

    def second_run(args):  # the same figures every time (timings vary): the next run's results
        measured.setdefault("results", first(args))
        return {**measured["results"], "note": "the second run"}

    monkeypatch.setattr(benchmark, "benchmark", second_run)
    reference = tmp_path / "reference"
    shutil.copytree(out, reference)
    assert benchmark.main([*argv[:-3], "--output_dir", str(reference), "--overwrite_output_dir"]) == 0
    new = hashes(reference)
    assert old != new

    def check(copy, operation):
        killed = copy / "bench"
        with OutputTarget(killed, kind=FILES):  # what the next run does first
            pass
        assert hashes(killed) in (old, new) and set(leftovers(copy)) <= {".bench.ppt-lock"}, f"operation {operation}"

    assert at_every_operation(lambda: benchmark.main(argv), workspace, check) > 10
    assert hashes(out) == new and leftovers(tmp_path) == []


def test_train_killed_at_every_file_operation_of_the_final_save(cifar100_path, tmp_path, monkeypatch):
    """train.py's final save, killed at each of its file operations: the folder is the unfinished run it was (no
    all_results.json, nothing else changed), or, once the next run has finished the move, the whole finished run."""
    workspace = tmp_path / "work"
    out = workspace / "run"
    original = train.finalize_output
    seen = {}

    def checked_finalize(trainer, output, train_metrics, eval_metrics, info):
        before = hashes(out)
        expected = {"model.safetensors", "config.json", "trainer_state.json", "train_results.json"}
        if eval_metrics is not None:
            expected |= {"eval_results.json", "all_results.json"}

        def check(copy, operation):
            killed = copy / "run"
            with OutputTarget(killed, kind=FILES):  # recovery, as the next run does it first
                pass
            now = hashes(killed)
            if now != before:  # then the whole new save, the manifest agreeing with every file
                assert outputs.edited_files(killed) == [], f"killed at operation {operation}: a mixed folder"
                assert expected <= set(now), f"killed at operation {operation}"
            assert ("all_results.json" in now) == ("all_results.json" in before or now != before and
                                                   eval_metrics is not None), f"killed at operation {operation}"
            assert set(leftovers(copy)) <= {".run.ppt-lock"}, f"killed at operation {operation}"

        seen.setdefault("operations", []).append(at_every_operation(
            lambda: original(trainer, output, train_metrics, eval_metrics, info), workspace, check))

    monkeypatch.setattr(train, "finalize_output", checked_finalize)
    train.main(["--dataset_name", cifar100_path, "--output_dir", str(out), *TINY_MODEL_ARGS, *TINY_PPT_ARGS,
                *FAST_TRAINING_ARGS, "--max_steps", "1"])
    assert len(seen["operations"]) == 2 and min(seen["operations"]) > 10  # before and after the evaluation
    assert json.loads((out / "all_results.json").read_text())["train_global_step"] == 1
    assert outputs.edited_files(out) == [] and leftovers(tmp_path) == []


@pytest.mark.slow  # a real export (tracing takes most of a minute on two cores)
def test_onnx_export_killed_at_every_file_operation_leaves_the_old_file_or_the_new(tiny_checkpoint, tmp_path,
                                                                                  monkeypatch):
    """From the moment the file is written (tracing writes nothing of ours): the old file, or a whole new one."""
    pytest.importorskip("onnxscript")
    from modeling_ppt_deit import PPTDeiTForImageClassification
    from ppt_tools.export.onnx import FINGERPRINT_KEY, file_metadata, export_onnx

    model = PPTDeiTForImageClassification.from_pretrained(tiny_checkpoint).eval()
    workspace = tmp_path / "work"
    workspace.mkdir()
    path = workspace / "model.onnx"
    path.write_bytes(b"the old file")
    writing = []
    enter = OutputTarget.__enter__
    monkeypatch.setattr(OutputTarget, "__enter__", lambda self: writing.append(True) or enter(self))

    def check(copy, operation):
        with OutputTarget(copy / "model.onnx", kind=outputs.FILE):  # removes the staging file of a killed export
            pass
        killed = copy / "model.onnx"
        if killed.read_bytes() != b"the old file":  # the new file, whole: ONNX reads it, with its metadata
            assert file_metadata(killed)[FINGERPRINT_KEY] == "new", f"killed at operation {operation}"
        assert set(leftovers(copy)) <= {".model.onnx.ppt-lock"}, f"killed at operation {operation}"

    def action():
        export_onnx(model, path, overwrite=True, metadata={FINGERPRINT_KEY: "new"})

    assert at_every_operation(action, workspace, check, armed=lambda: bool(writing)) >= 3
    assert file_metadata(path)[FINGERPRINT_KEY] == "new" and leftovers(tmp_path) == []


@pytest.mark.slow
def test_an_onnx_file_that_fails_its_check_is_not_left_behind(tiny_checkpoint, tmp_path, capsys):
    """NaN weights: ONNX Runtime's outputs differ from PyTorch's; the file was kept before, now it is never written."""
    pytest.importorskip("onnxruntime")
    import torch

    from modeling_ppt_deit import PPTDeiTForImageClassification
    from ppt_tools.export import onnx as onnx_export

    model = PPTDeiTForImageClassification.from_pretrained(tiny_checkpoint)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    model.save_pretrained(tmp_path / "nan")
    assert onnx_export.main(["--model_name_or_path", str(tmp_path / "nan"),
                             "--output_file", str(tmp_path / "model.onnx")]) == 1
    err = capsys.readouterr().err
    assert "does not match PyTorch" in err and "was not written" in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["nan"]


# ---- one writer at a time -------------------------------------------------------------------------------------------


HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ppt_tools.core.outputs import OutputTarget
    with OutputTarget(sys.argv[1], "the holder --output_dir x"):
        Path(sys.argv[2]).write_text("held")
        time.sleep(120)
""")


@pytest.fixture
def held(tmp_path):
    """A live process holding the lock on tmp_path/out."""
    target, ready = tmp_path / "out", tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target), str(ready)], env=env)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert holder.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    yield target, holder
    holder.kill()
    holder.wait()


def test_a_second_writer_is_refused_naming_the_other_process(held):
    target, holder = held
    with pytest.raises(OutputBusyError) as error:
        OutputTarget(target).__enter__()
    assert f"process {holder.pid}" in str(error.value) and "the holder --output_dir x" in str(error.value)


def test_a_killed_writers_lock_is_taken_over(held):
    target, holder = held
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert outputs.lock_path(outputs.resolve_target(target)).exists()  # the dead process's lock file
    with OutputTarget(target):
        pass
    assert not outputs.lock_path(outputs.resolve_target(target)).exists()


def test_two_runs_into_one_folder_and_a_resume_of_a_live_run_are_refused(held, cifar100_path, tiny_checkpoint,
                                                                          capsys):
    """must-fix 4: train.py, a resume while the run is alive, and benchmark.py into a folder another run writes."""
    target, holder = held
    argv = ["--dataset_name", cifar100_path, "--output_dir", str(target), *TINY_MODEL_ARGS, *TINY_PPT_ARGS,
            *FAST_TRAINING_ARGS]
    for extra in ([], ["--resume_from_checkpoint", "True"]):
        assert train.cli([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert f"is being written by process {holder.pid}" in err and err.count("\n") == 1
    from ppt_tools import benchmark

    assert benchmark.main(["--model_name_or_path", tiny_checkpoint, "--cost_only", "--output_dir", str(target)]) == 2
    assert f"is being written by process {holder.pid}" in capsys.readouterr().err
    assert not target.exists()


# ---- the edit check -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("edit", ["app.py", "examples/mine.png", "flagged/log.csv"])
def test_a_space_edited_since_it_was_written_is_not_replaced(tmp_path, capsys, edit):
    """must-fix 1: edit S/app.py or add S/examples/mine.png, run `publish --space --space_dir S --dry_run` again:
    refused with the file named, every file of S unchanged."""
    export = tmp_path / "export"
    shutil.copytree(trained_export().folder, export)
    space = tmp_path / "space"
    argv = ["--model_name_or_path", str(export), "--hub_model_id", REPO_ID, "--dry_run", "--upload_only", "--space",
            "--space_dir", str(space)]
    assert publish.main(argv) == 0
    (space / edit).parent.mkdir(exist_ok=True)
    (space / edit).write_bytes(b"my own work")
    before = hashes(space)
    capsys.readouterr()
    assert publish.main(argv) == 2  # refused as bad input, before any work
    err = capsys.readouterr().err
    assert f"{edit} changed since" in err and "--space_dir" in err and err.count("\n") == 1
    assert hashes(space) == before


# ---- damage after writing, write failures, leftovers ----------------------------------------------------------------


def test_a_weights_file_damaged_after_it_was_written_is_found_on_load(tmp_path):
    """issue 18 item 7: a zeroed tail of model.safetensors loads without complaint; the manifest finds it."""
    from ppt_tools.core.models import load_pretrained

    folder = tmp_path / "export"
    publish.export_folder(tiny_trained_model(steps=1), tiny_image_processor(), folder)
    load_pretrained(str(folder), "the export")
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(64)
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="model.safetensors is not the file that was written there"):
        load_pretrained(str(folder), "the export")


def test_a_full_disk_is_one_line_and_the_old_folder_stays_whole(tmp_path, monkeypatch, capsys):
    """The disk fills while the new export is written (safetensors, torch.save, and plain writes report it each in
    their own way): one line naming the folder, the previous export whole, nothing staged left."""
    target, model = tmp_path / "export", tiny_trained_model(steps=1)
    publish.export_folder(model, tiny_image_processor(), target)
    old = hashes(target)
    failures = [OSError(errno.ENOSPC, "No space left on device"), RuntimeError("[enforce fail at inline_container.cc"
                ":672] . unexpected pos 64 vs 0 basic_ios::clear: iostream error")]
    # torch.save's message carries no errno: the free space tells
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(2**30, 2**30, 4096))
    resolved = str(outputs.resolve_target(target))
    for failure in failures:
        def full(*args, **kwargs):
            raise failure

        monkeypatch.setattr(publish, "_verify_export", full)
        with pytest.raises(OutputError) as error:
            publish.export_folder(model, tiny_image_processor(), target, training_info={"epochs": 2})
        assert str(error.value).startswith(f"could not write {resolved!r}: the disk is full"), str(error.value)
        assert f"{resolved!r} is as it was" in str(error.value) and "\n" not in str(error.value)
        assert hashes(target) == old and leftovers(tmp_path) == []


def test_only_our_leftovers_are_cleaned(tmp_path, capsys):
    """A staging folder of a killed run is removed and said so; the user's hidden files are not touched; a folder a
    killed run set aside with no new one in place is put back."""
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    (tmp_path / ".out.partial-mine").mkdir()  # not our name
    (tmp_path / ".other.ppt-staging").mkdir()  # another target's
    outputs.staging_path(target).mkdir()
    (outputs.staging_path(target) / "half.json").write_text("{")
    with OutputTarget(target, kind=FILES):
        pass
    assert "removed .out.ppt-staging, the unfinished write of a killed run" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == [".other.ppt-staging", ".out.partial-mine", "out"]
    os.rename(target, outputs.old_path(target))
    with OutputTarget(target):
        pass
    assert (target / "keep.txt").read_text() == "mine"


def test_files_interrupted_while_moving_in_are_finished_by_the_next_run(tmp_path, monkeypatch):
    """Ctrl-C (or any error) after the journal is written and one file has moved in: the staging folder and its
    journal stay, and the next run moves the rest, so the folder never keeps old and new files mixed."""
    target = tmp_path / "out"
    target.mkdir()
    for name in ("a.json", "b.json"):
        (target / name).write_text("old")
    moved = []
    real_replace = outputs.replace_path

    def interrupted(source, destination):
        if moved:
            raise KeyboardInterrupt
        moved.append(destination)
        real_replace(source, destination)

    monkeypatch.setattr(outputs, "replace_path", interrupted)
    with pytest.raises(KeyboardInterrupt), OutputTarget(target, kind=FILES) as output, output.staging() as staging:
        for name in ("a.json", "b.json"):
            (staging / name).write_text("new")
    assert sorted((target / name).read_text() for name in ("a.json", "b.json")) == ["new", "old"]  # mid-commit
    assert (outputs.staging_path(target) / outputs.JOURNAL_FILE).is_file()
    monkeypatch.setattr(outputs, "replace_path", real_replace)
    with OutputTarget(target, kind=FILES):
        pass
    assert [(target / name).read_text() for name in ("a.json", "b.json")] == ["new", "new"]
    assert not os.path.lexists(outputs.staging_path(target))


def test_a_manifest_or_results_file_nested_past_the_parsers_depth_is_bad_input(tmp_path):
    from ppt_tools.core.results import read_json_object

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / MANIFEST_FILE).write_text(deep)
    assert outputs.recorded_files(tmp_path) is None  # read as no manifest, not a traceback
    (tmp_path / "results.json").write_text(deep)
    with pytest.raises(ValueError, match="results.json' is not valid JSON"):
        read_json_object(tmp_path / "results.json", "--results")
