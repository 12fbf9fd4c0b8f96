# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""The one output mechanism of every command: how a folder (or file) a command writes appears, whole, or not at all.

    with OutputTarget("outputs/run", "train.py", kind=FILES) as output:    # lock, then leftovers of killed runs
        with output.staging() as staging:                                   # write here ...
            save(staging)
        # ... committed: the files are in outputs/run, recorded in its manifest

A target is written by one process at a time: `OutputTarget` takes a lock (`fcntl.flock` on `.<name>.ppt-lock`
beside the target, which records the owner's PID and command; the kernel drops it when the owner dies, so a killed
run never leaves a lock that blocks the next one). A second writer is refused with `OutputBusyError`, naming the
owner.

Everything is written into a staging folder beside the target, `.<name>.ppt-staging`, then put in place by renames,
so that a kill at any moment leaves the old or the new content, whole:

- `FOLDER`: the staging folder replaces the target folder as a whole (an export, a Space). The two are exchanged in
  one atomic `renameat2(RENAME_EXCHANGE)` where the file system has it; otherwise the old folder is renamed aside to
  `.<name>.ppt-old` first, and a run that finds it there with no target puts it back.
- `FILES`: the staged files join a folder that holds other things (a training run's checkpoints, several commands'
  result files): once they are all written, a journal listing them goes into the staging folder, then each is
  renamed into the target. A run that finds a staging folder with its journal finishes those renames (the new
  files, whole); without a journal, the write never finished, and the staging folder is deleted (the old files,
  whole).
- `FILE`: one file (an ONNX file, a figure): staged as `.<name>.ppt-staging`, then renamed over the target.

Only names of this pattern are ever cleaned up, and only under the target's lock: nothing a tool did not write.

What a command wrote is recorded in a manifest inside the folder (`.ppt-manifest.json`, or an export's
`results.json`): the sha256 of each file. `edited_files` names what changed or was added since (a hand-edited
Space, an added image), which a command refuses to replace; `check_recorded_files` finds a file damaged after it was
written (a zeroed tail of `model.safetensors`) when a tool loads the folder.

A failed write (a full disk, a permission) raises `OutputError`, one line naming the target, and leaves the old
content as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from .errors import CommandFailure


FOLDER, FILES, FILE = "folder", "files", "file"
MANIFEST_FILE = ".ppt-manifest.json"
# Where folders record what was written: ours, and an export's results.json (`ppt_tools.export.publish`), which the
# Hub repo carries.
MANIFESTS = (MANIFEST_FILE, "results.json")
LOCK_SUFFIX = ".ppt-lock"
STAGING_SUFFIX = ".ppt-staging"
OLD_SUFFIX = ".ppt-old"
JOURNAL_FILE = ".ppt-journal.json"  # in a FILES staging folder: written once every staged file is complete
# What running a folder's own code leaves there (bytecode, gradio's cache): never user work, never compared.
# (gradio's `flagged/` holds what users flagged: their work, so it is compared.)
RUNTIME_LEFTOVERS = frozenset({"__pycache__", ".gradio"})


class OutputBusyError(ValueError):
    """Another live process is writing the same target."""


class OutputError(CommandFailure):
    """Writing the target failed (a full disk, a permission); the old content is unchanged."""


def staging_path(target) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}{STAGING_SUFFIX}"


def old_path(target) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}{OLD_SUFFIX}"


def lock_path(target) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}{LOCK_SUFFIX}"


def resolve_target(target) -> Path:
    """`target` with symlinks followed (the folder a link points to is written, and the link kept), absolute."""
    return Path(os.path.realpath(os.path.abspath(os.fspath(target))))


# ---- the lock -----------------------------------------------------------------------------------------------------


def _describe_owner(text: str) -> str:
    try:
        owner = json.loads(text)
        return f"process {owner['pid']} on {owner['host']} ({owner['command']}, since {owner['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


class TargetLock:
    """An exclusive `flock` on `.<name>.ppt-lock` beside `target`, holding the owner's PID and command; removed on
    release. The kernel releases a dead process's lock, so a stale lock file is simply taken over."""

    def __init__(self, target, command: str):
        self.target, self.command = Path(target), command
        self.path = lock_path(self.target)
        self.descriptor: int | None = None

    def acquire(self) -> TargetLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = "another process"
                with contextlib.suppress(OSError):
                    owner = _describe_owner(os.pread(descriptor, 4096, 0).decode("utf-8", "replace"))
                os.close(descriptor)
                raise OutputBusyError(
                    f"{str(self.target)!r} is being written by {owner}: wait until it ends, or choose another output "
                    f"folder (a lock file {self.path.name} beside it says so; it goes away when that process ends)"
                ) from None
            # The owner we waited for may have removed the file on release: lock the file that is at the path now.
            try:
                same = os.path.samestat(os.fstat(descriptor), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, json.dumps(owner).encode(), 0)
        self.descriptor = descriptor
        return self

    def release(self) -> None:
        if self.descriptor is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: a waiting process then re-opens a fresh file
        os.close(self.descriptor)
        self.descriptor = None


def _command_line() -> str:
    text = " ".join([os.path.basename(sys.argv[0] or "python"), *sys.argv[1:]])
    return text if len(text) <= 200 else text[:197] + "..."


# ---- renames ----------------------------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = None


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`); False where unsupported."""
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def replace_path(staging: Path, target: Path) -> None:
    """Put `staging` (a folder or file beside `target`) in `target`'s place; at every moment `target` is the old or
    the new one (or, where the file system cannot exchange two folders, briefly absent with the old one at
    `.<name>.ppt-old`, which `recover` puts back)."""
    if staging.is_dir() and target.is_dir() and not target.is_symlink():
        if _exchange(staging, target):
            _remove(staging)  # now the old folder
            return
        old = old_path(target)
        _remove(old)
        os.rename(target, old)
        os.rename(staging, target)
        _remove(old)
        return
    os.replace(staging, target)


def _move_new(staging: Path, target: Path) -> None:
    """Move the file `staging` to `target`, which must not exist: a hard link fails if `target` appeared meanwhile
    (a rename would silently replace it), then the staging name goes."""
    appeared = FileExistsError(f"{str(target)!r} appeared during the export; it is left as it is")
    try:
        os.link(staging, target)
    except FileExistsError:
        raise appeared from None
    except OSError:  # a file system without hard links: check, then rename (a small race)
        if os.path.lexists(target):
            raise appeared from None
        os.replace(staging, target)
        return
    os.unlink(staging)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


# ---- the manifest -------------------------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digests(folder, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Relative path -> sha256 of every file below `folder`, but the names in `exclude`, the manifests and what
    running the folder's code leaves (`RUNTIME_LEFTOVERS`)."""
    folder = Path(folder)
    skipped = {MANIFEST_FILE, *exclude}
    digests = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if set(relative.parts) & RUNTIME_LEFTOVERS or relative.as_posix() in skipped:
            continue
        if path.is_file() or path.is_symlink():
            digests[relative.as_posix()] = sha256_of(path) if path.is_file() else "symlink"
    return digests


def recorded_files(folder, manifest: str = MANIFEST_FILE) -> dict[str, str] | None:
    """What the manifest `manifest` in `folder` records (relative path -> sha256), or None without one."""
    try:
        content = json.loads((Path(folder) / manifest).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable, not JSON, or nested past the parser's depth
        return None
    files = content.get("files") if isinstance(content, dict) else None
    return files if isinstance(files, dict) else None


def write_manifest(folder, manifest: str = MANIFEST_FILE, extra: dict | None = None,
                   files: dict[str, str] | None = None) -> None:
    """Record every file of `folder` (or `files`) in `folder/manifest`, beside `extra` (an export's results)."""
    from .results import write_json  # results writes through this module's staging; import here to avoid a cycle

    folder = Path(folder)
    files = file_digests(folder, exclude=[manifest]) if files is None else files
    write_json(folder / manifest, {**(extra or {}), "files": files})


def edited_files(folder, manifest: str = MANIFEST_FILE) -> list[str] | None:
    """The files of `folder` that differ from what the manifest records, or that it does not record (a hand-edited
    file, an added one); None when the folder has no manifest (not written by this mechanism)."""
    recorded = recorded_files(folder, manifest)
    if recorded is None:
        return None
    return sorted(name for name, digest in file_digests(folder, exclude=[manifest]).items()
                  if recorded.get(name) != digest)


def check_recorded_files(folder, names: Iterable[str], what: str, manifest: str = MANIFEST_FILE) -> None:
    """`ValueError` if a file of `names` in `folder` differs from what the manifest recorded when it was written
    (damaged on disk, overwritten); nothing to check in a folder without a manifest."""
    recorded = recorded_files(folder, manifest)
    if recorded is None:
        return
    for name in names:
        path = Path(folder) / name
        if name in recorded and path.is_file() and sha256_of(path) != recorded[name]:
            raise ValueError(
                f"{what}: {name} is not the file that was written there (its sha256 differs from the one recorded in "
                f"{manifest}): it was damaged on disk or replaced. Restore it (or write the folder again); if you "
                f"replaced it on purpose, delete {str(Path(folder) / manifest)!r}"
            )


# ---- errors -------------------------------------------------------------------------------------------------------


WRITE_FAILURES = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO}


def _write_failure(error: BaseException, where: Path) -> str | None:
    """Why writing failed, in words, if `error` is a write failure (an OS error, or a library's report of one:
    torch.save's `basic_ios::clear`, safetensors' `IoError`); None for anything else."""
    text = str(error)
    code = getattr(error, "errno", None)
    if isinstance(error, OSError) and code not in WRITE_FAILURES:
        return None  # a file not found, one that exists: the caller's own error, not the disk's
    if not isinstance(error, OSError):
        io_words = ("basic_ios", "iostream", "IoError", "No space left", "File too large", "Permission denied",
                    "PytorchStreamWriter failed")
        if not any(word in text for word in io_words):
            return None
        for candidate in (errno.ENOSPC, errno.EFBIG, errno.EACCES, errno.EDQUOT):
            if os.strerror(candidate) in text:
                code = candidate
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"no permission to write there ({os.strerror(code)})"
    if code == errno.EFBIG:
        return "a file grew past the size the system allows (File too large)"
    try:
        free = shutil.disk_usage(where if where.exists() else where.parent).free
    except OSError:
        free = None
    if free is not None and free < 16 * 2**20:
        return f"the disk is full ({free // 2**10} KiB free)"
    return f"an I/O error ({os.strerror(code) if isinstance(code, int) else text.splitlines()[0][:200]})"


@contextlib.contextmanager
def translated_write_errors(target, whole: str):
    """Re-raise a write failure inside the block as `OutputError` naming `target` and what is left (`whole`)."""
    try:
        yield
    except OutputError:
        raise
    except Exception as error:
        reason = _write_failure(error, Path(target))
        if reason is None:
            raise
        raise OutputError(f"could not write {str(target)!r}: {reason}; {whole}") from error


# ---- the target ---------------------------------------------------------------------------------------------------


class OutputTarget:
    """A folder or file one command writes, locked for it while it runs (see the module docstring).

    Args:
        target: the folder (`FOLDER`, `FILES`) or file (`FILE`); a symlink is followed.
        command: what the lock file names as its owner (default: the command line).
        kind: `FOLDER` (replaced as a whole), `FILES` (the staged files join the folder), `FILE`.
        manifest: the manifest's name in the folder (`FOLDER`, `FILES`); None: none written.
        last: `FILES`: names renamed into place after all others (a marker such as all_results.json).
        replace: `FILE`: replace an existing file; False: a file that appeared meanwhile (written by something that
            takes no lock) is left as it is and the write fails with `FileExistsError`.
    """

    def __init__(self, target, command: str | None = None, kind: str = FOLDER, manifest: str | None = MANIFEST_FILE,
                 last: Iterable[str] = (), replace: bool = True):
        if kind not in (FOLDER, FILES, FILE):
            raise ValueError(f"kind {kind!r}")
        self.target = resolve_target(target)
        self.command = command or _command_line()
        self.kind, self.manifest, self.last, self.replace = kind, manifest, tuple(last), replace
        self.lock = TargetLock(self.target, self.command)
        self.cleaned: list[str] = []  # leftovers of killed runs that `recover` dealt with, in words

    # -- the lock and what a killed run left --

    def __enter__(self) -> OutputTarget:
        self.lock.acquire()
        try:
            self.recover()
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.lock.release()

    def recover(self) -> list[str]:
        """Finish or undo what a killed writer of this target left (under the lock: no writer is alive), and say so
        on stderr: a journaled staging folder is committed, any other staging removed, a folder set aside is put
        back if the target is missing (else removed)."""
        staging, old = staging_path(self.target), old_path(self.target)
        if os.path.lexists(old):
            if not os.path.lexists(self.target):
                os.rename(old, self.target)
                self.cleaned.append(f"put back {self.target.name}, which a killed run had set aside as {old.name}")
            else:
                _remove(old)
                self.cleaned.append(f"removed {old.name}, the previous {self.target.name} a killed run had replaced")
        if os.path.lexists(staging):
            journal = staging / JOURNAL_FILE
            if self.kind == FILES and staging.is_dir() and journal.is_file():
                self._commit_files(staging, json.loads(journal.read_text(encoding="utf-8")))
                self.cleaned.append(f"finished moving the files of {staging.name} (complete, left by a killed run) "
                                    f"into {self.target.name}")
            else:
                _remove(staging)
                self.cleaned.append(f"removed {staging.name}, the unfinished write of a killed run")
        for line in self.cleaned:
            print(f"note: {line}", file=sys.stderr)
        return self.cleaned

    # -- writing --

    @contextlib.contextmanager
    def staging(self):
        """A fresh staging path beside the target (a folder; for `FILE`, the path of the file to write); once the
        block ends without an error it is committed, else removed, the target untouched."""
        staging = staging_path(self.target)
        existed = os.path.lexists(self.target)
        whole = f"{str(self.target)!r} is as it was" if existed else "nothing was written"
        try:
            with translated_write_errors(self.target, whole):
                _remove(staging)
                if self.kind != FILE:
                    staging.mkdir(parents=True)
                else:
                    staging.parent.mkdir(parents=True, exist_ok=True)
                yield staging
                self.commit(staging)
        except BaseException:
            # Once the journal is written the moves have begun: the staging folder stays, and the next run finishes
            # them (`recover`), so the folder never keeps a mix of old and new files.
            if not (self.kind == FILES and (staging / JOURNAL_FILE).is_file()):
                with contextlib.suppress(OSError):
                    _remove(staging)
            raise

    def commit(self, staging: Path) -> None:
        """Put a complete staging folder or file in place (see the module docstring)."""
        if self.kind == FILE:
            with contextlib.suppress(OSError):
                os.chmod(staging, 0o644)
            if self.replace:
                os.replace(staging, self.target)
            else:
                _move_new(staging, self.target)
            return
        if self.kind == FOLDER:
            if self.manifest == MANIFEST_FILE:
                write_manifest(staging)
            _fsync_folder(staging)
            replace_path(staging, self.target)
            return
        names = sorted(entry.name for entry in staging.iterdir() if entry.name != JOURNAL_FILE)
        names = [name for name in names if name not in self.last] + [name for name in self.last if name in names]
        files = {name: sha256_of(staging / name) for name in names if (staging / name).is_file()}
        from .results import write_json  # import here: results uses this module

        write_json(staging / JOURNAL_FILE, {"names": names, "files": files, "manifest": self.manifest})
        _fsync_folder(staging)
        self._commit_files(staging, {"names": names, "files": files, "manifest": self.manifest})

    def _commit_files(self, staging: Path, journal: dict) -> None:
        self.target.mkdir(parents=True, exist_ok=True)
        for name in journal["names"]:
            if os.path.lexists(staging / name):  # a resumed commit: the ones moved already are gone
                replace_path(staging / name, self.target / name)
        manifest = journal.get("manifest")
        if manifest:  # written in the staging folder, then renamed: the target only ever holds a whole manifest
            recorded = recorded_files(self.target, manifest) or {}
            recorded = {name: digest for name, digest in recorded.items() if (self.target / name).exists()}
            write_manifest(staging, manifest, files={**recorded, **journal["files"]})
            os.replace(staging / manifest, self.target / manifest)
        _remove(staging)


# ---- checks before replacing a folder ---------------------------------------------------------------------------


def refuse_edited(target, what: str, way_forward: str, manifest: str = MANIFEST_FILE) -> None:
    """`ValueError` naming the files of the folder `target` that changed or were added since the tool that wrote it
    recorded them in `manifest`, with `way_forward`; nothing to refuse for a folder without a manifest."""
    target = Path(target)
    edited = edited_files(target, manifest) if target.is_dir() else None
    if edited:
        shown = ", ".join(edited[:5]) + (f" and {len(edited) - 5} more" if len(edited) > 5 else "")
        raise ValueError(f"{what} {str(target)!r} was written by this tool, but {shown} changed since (edited or added "
                         f"by hand), and replacing it would lose that: {way_forward}")


def check_replaceable(path, is_ours, what: str, ours: str, replaces: str, error: type[Exception] = ValueError) -> Path:
    """`path`, resolved, checked before a `FOLDER` write replaces it: it must be new, an empty folder, or a folder
    `is_ours(folder)` accepts (the layout the tool writes). Otherwise `error`, naming `what` the folder is, what
    `ours` holds and what `replaces` it."""
    path = Path(path)
    path = Path(os.path.realpath(path)) if path.is_symlink() else path
    if path.exists() and not path.is_dir():
        raise error(f"{what} {str(path)!r} exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not is_ours(path):
        raise error(f"{what} {str(path)!r} is not empty and is not {ours}: choose an empty or new folder, since "
                    f"{replaces}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise error(f"{what} {str(path)!r} cannot be created: {str(parent)!r} is not a directory")
    return path


__all__ = [
    "FILE",
    "FILES",
    "FOLDER",
    "MANIFEST_FILE",
    "MANIFESTS",
    "OutputBusyError",
    "OutputError",
    "OutputTarget",
    "TargetLock",
    "check_recorded_files",
    "check_replaceable",
    "edited_files",
    "file_digests",
    "old_path",
    "recorded_files",
    "refuse_edited",
    "replace_path",
    "resolve_target",
    "sha256_of",
    "staging_path",
    "translated_write_errors",
    "write_manifest",
]
