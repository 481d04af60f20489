"""Safe file output.

- Atomic writes: write beside the target, then rename, so a crash never leaves half a file.
- Run locks (:class:`RunLock`): one live run per output folder; stale locks of dead
  processes are taken over with a warning.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = [
    "LOCK_NAME",
    "RunLock",
    "atomic_write",
    "check_output_dir",
    "write_bytes",
    "write_json",
    "write_text",
]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], object]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates the file 0600; give the result the permissions of a normal file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    # Read without changing it where possible: os.umask(0) would affect other threads briefly.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# --- run locks -------------------------------------------------------------------------------

#: Name of the lock file a running command keeps in its output folder.
LOCK_NAME = ".underfire.lock"


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a zombie, already dead, counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return False
    try:  # Linux: a killed child not yet reaped by its parent is a zombie, not a live holder
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _pid_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux /proc), or None where
    this cannot be read. A pid reused by a later process has a different start time."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[19])  # field 22 of proc(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


def _pid_is_other_process(pid: int, recorded_start: object) -> bool:
    """True when ``pid`` is known to be a different process than the one that wrote a lock
    recording ``recorded_start``: it started at another time, or runs something other than
    Python (checked when the lock has no start time)."""
    if isinstance(recorded_start, int):
        now = _pid_start_ticks(pid)
        if now is not None:
            return now != recorded_start
    return not _pid_runs_python(pid)


def _pid_runs_python(pid: int) -> bool:
    """False only when ``pid`` is known (Linux /proc) to run something other than Python:
    a pid recycled by an unrelated program after the holder died (e.g. after a reboot)."""
    try:  # the executable first: a process title (setproctitle, pytest-xdist) hides argv
        if "python" in os.path.basename(os.readlink(f"/proc/{pid}/exe")).lower():
            return True
    except OSError:
        pass
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().lower()
    except OSError:
        return True
    return not cmdline or b"python" in cmdline or b"underfire" in cmdline


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """Create the output folder ``path`` if needed; refuse a file or an unwritable folder.

    Raises:
        NotADirectoryError: ``path`` (or a parent) is a file.
        PermissionError: the folder cannot be written.
    """
    path = Path(path)
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(
                f"{flag} {path}: {parent} is a file, not a folder; choose another {flag}"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(
            f"{flag} {path} cannot be created ({err.strerror or err}); choose a writable folder"
        ) from err
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"{flag} {path} is not writable; choose a writable folder")
    return path


# Linux pids stay below 2**22; anything beyond 2**31 cannot be a pid on any system.
_MAX_PID = 2**31 - 1


def _lock_damage(holder: dict[str, Any] | None) -> str | None:
    """Why a lock record cannot be trusted to name its holder (None when it can)."""
    if holder is None:
        return "cannot be read (not a JSON object)"
    pid = holder.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= _MAX_PID:
        return f"is damaged (its pid is {pid!r})"
    if not isinstance(holder.get("host"), str):
        return "is damaged (it names no host)"
    return None


class RunLock:
    """An exclusive lock on an output folder, held by one running command.

    The lock is a file ``<folder>/.underfire.lock`` holding the holder's pid, host name,
    command and start time (also the process's start in clock ticks, so that a pid reused by
    another process is told apart), created atomically (written aside, then hard-linked into place,
    which fails if the file exists). A second run on the same folder gets
    :class:`~underfire.core.errors.OutputLockedError` naming the holder. A lock left by a
    process that no longer runs on this host (killed, crashed) is stale: it is taken over with
    a warning. A lock from another host is never taken over (its pid cannot be checked there).
    A lock file that cannot be read, or names no valid pid and host, is refused with a message
    naming it (whoever wrote it cannot be told).

    With ``lock_of``, the lock holds that single file of ``folder`` instead of the folder: it
    is ``<folder>/.<name>.underfire.lock`` (see :func:`underfire.core.outputs.lock_file`).
    ``flag`` names the option that chose the path, in messages.

    >>> with RunLock("runs/x", "underfire train"):
    ...     ...  # write into runs/x
    """

    def __init__(
        self,
        folder: str | Path,
        command: str,
        *,
        lock_of: str | Path | None = None,
        flag: str = "--out",
    ) -> None:
        self.folder = Path(folder)
        # a single file is locked beside it, under its own name
        self.path = (
            self.folder / f".{Path(lock_of).name}{LOCK_NAME}"
            if lock_of
            else self.folder / LOCK_NAME
        )
        self.target = Path(lock_of) if lock_of else self.folder
        self.command = command
        self.flag = flag
        self._record: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return self._record is not None

    def holder(self) -> dict[str, Any] | None:
        """The record in the lock file, or None when there is none (or it is unreadable)."""
        try:
            record = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def acquire(self) -> RunLock:
        import socket
        import time
        import warnings

        from underfire.core.errors import OutputLockedError

        if self.held:
            raise RuntimeError(f"{self.path} is already held by this RunLock")
        check_output_dir(self.folder, self.flag)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "pid_start": _pid_start_ticks(os.getpid()),
        }
        fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f)
            for _ in range(3):
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    pass
                else:
                    self._record = record
                    return self
                holder = self.holder()
                if holder is None and not self.path.exists():
                    continue  # released between our attempt and the read
                damage = _lock_damage(holder)
                if damage is not None:
                    raise OutputLockedError(
                        f"{self.target} is locked by {self.path}, which {damage}; if no other "
                        f"underfire run writes there, delete {self.path} and try again"
                    )
                assert holder is not None  # a well-formed lock (checked just above)
                pid, host = holder["pid"], holder["host"]
                who = (
                    f"`{holder.get('command', '?')}` (pid {pid} on {host}, started "
                    f"{holder.get('started', '?')})"
                )
                if host == record["host"] and (
                    not _pid_alive(pid) or _pid_is_other_process(pid, holder.get("pid_start"))
                ):
                    warnings.warn(
                        f"taking over the stale lock of {who} on {self.target}: that process "
                        "no longer runs",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                hint = (
                    f"wait for it to finish or stop it (if it is not an underfire run, delete "
                    f"{self.path})"
                    if host == record["host"]
                    else f"if it no longer runs on {host}, delete {self.path}"
                )
                raise OutputLockedError(
                    f"{self.target} is in use by {who}; {hint}, or choose another {self.flag}"
                )
            raise OutputLockedError(f"could not lock {self.target}; try again")
        finally:
            Path(tmp).unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if self._record is None:
            return
        if self.holder() == self._record:
            self.path.unlink(missing_ok=True)
        self._record = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
