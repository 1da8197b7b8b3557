"""The built-in ``files`` cleanup target: old files that match a glob, below an allowed root.

A ``CleanupConfig`` with ``cleanup_target="files"`` deletes the regular files in its
``directory`` whose path relative to it matches ``pattern`` and whose modification time is
older than ``older_than_hours`` hours, or, without that option, the config's ``retain_days``
days. The rules:

- ``SCHEDULING_FILE_CLEANUP_ROOTS`` is the security boundary. The directory must resolve
  (``realpath``: symbolic links and ``..`` resolved) to one of those directories or a directory
  below one; this is checked when the options are validated (saving in the admin, the API or an
  import) and again at every run, since the roots and the links may have changed. While the
  setting is empty (the default) the target refuses to run.
- Only system schedules (no tenant) may use it: the files below the roots belong to no tenant,
  and a tenant's admin must not delete what other tenants or the host project keep there.
- Symbolic links are never followed and never deleted. A link that matches the pattern is
  skipped (counted in ``skipped``), whether it points at a file or a directory, inside the
  root or not; a link to a directory is not descended into. The walk opens each directory
  relative to its parent's descriptor with ``O_NOFOLLOW`` and deletes by name relative to it,
  so a directory swapped for a link while the run is going is not entered either.
- Directories are never deleted, nor sockets, FIFOs or devices: only regular files.
- A file that cannot be deleted (permissions) is recorded in ``errors`` and the run goes on;
  so is a subdirectory that cannot be read.
- A run stops before the execution's time runs out, and after the config's ``batch_size``
  files (a cap per run, which also bounds what a wrong pattern can do in one run): the result
  then says ``complete: false``, and the next run continues.
- ``dry_run`` deletes nothing and reports what a run would delete (``deleted``, ``bytes`` and
  ``paths`` then count what it would have deleted).

Patterns are globs matched against the path relative to the directory, with ``/`` between
names: ``*``, ``?`` and ``[...]`` match within one name, ``**`` as a whole name matches any
number of directories, none included (``*.log``: at the top only; ``**/*.log``: at any depth;
``cache/**``: everything below ``cache``). As in the shell, a name that starts with a dot is
matched only by a pattern name that starts with a dot, and ``**`` does not enter hidden
directories.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import stat
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from ..conf import conf
from ..exceptions import SchedulingError

if TYPE_CHECKING:
    from ..context import ExecutionContext
    from ..models import CleanupConfig

# At most this many deleted paths and errors are listed in a run's result.
MAX_LISTED = 100
# Deeper directories are not entered (recorded as an error).
MAX_DEPTH = 200

_DIR_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)


class FileCleanupRefused(SchedulingError):
    """A file cleanup that must not run: no roots, a directory outside them, a tenant's schedule."""


def _fd_walk_supported() -> bool:
    return (
        os.scandir in os.supports_fd
        and os.open in os.supports_dir_fd
        and os.unlink in os.supports_dir_fd
        and hasattr(os, "O_NOFOLLOW")
        and hasattr(os, "O_DIRECTORY")
    )


def allowed_roots() -> list[str]:
    """Return the real paths of ``SCHEDULING_FILE_CLEANUP_ROOTS``; ValidationError if unusable."""
    roots = conf.FILE_CLEANUP_ROOTS
    if not isinstance(roots, list | tuple) or not all(
        isinstance(root, str | os.PathLike) and os.path.isabs(root) for root in roots
    ):
        raise ValidationError(
            _(
                "File cleanup is disabled: SCHEDULING_FILE_CLEANUP_ROOTS is not a list of "
                "absolute paths (system check scheduling.E045)."
            ),
            code="bad_roots",
        )
    if not roots:
        raise ValidationError(
            _(
                "File cleanup is disabled: SCHEDULING_FILE_CLEANUP_ROOTS is empty. List the "
                "directories below which files may be deleted in that setting."
            ),
            code="no_roots",
        )
    return [os.path.realpath(os.fspath(root)) for root in roots]


def allowed_directory(path: str) -> str:
    """Return the real path of ``path`` if it is one of the roots or below one.

    Raises ``ValidationError`` with a message for the ``directory`` field otherwise.
    """
    roots = allowed_roots()
    if "\x00" in path:
        raise ValidationError(_("The path contains a NUL character."), code="null")
    if not os.path.isabs(path):
        raise ValidationError(_("Give an absolute path."), code="relative")
    real = os.path.realpath(path)
    for root in roots:
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return real
    shown = path if real == path else f"{path} (that is {real})"
    raise ValidationError(
        _("%(path)s is not inside SCHEDULING_FILE_CLEANUP_ROOTS: %(roots)s.")
        % {"path": shown, "roots": ", ".join(roots)},
        code="outside_roots",
    )


@dataclass(frozen=True)
class GlobPattern:
    """A glob over relative paths, matched one name at a time while the walk descends.

    The state of a match is the set of pattern positions reachable after the names so far;
    the walk carries it down, so it neither re-matches whole paths nor enters directories
    below which nothing can match.
    """

    names: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> GlobPattern:
        """Parse ``text``; ValueError with a message if it is not a relative glob."""
        text = text.strip() or "*"
        if "\x00" in text:
            raise ValueError("The pattern contains a NUL character.")
        if text.startswith("/"):
            raise ValueError("The pattern must be relative to the directory (no leading /).")
        names: list[str] = []
        for name in text.split("/"):
            if name in ("", ".", ".."):
                raise ValueError(
                    "The pattern may not contain empty, '.' or '..' names (a //, a trailing / "
                    "or a step out of the directory)."
                )
            if not (name == "**" and names and names[-1] == "**"):
                names.append(name)
        return cls(tuple(names))

    @property
    def text(self) -> str:
        return "/".join(self.names)

    def _closure(self, states: set[int]) -> frozenset[int]:
        # ``**`` also matches no name at all: its position implies the next one.
        for state in list(states):
            while state < len(self.names) and self.names[state] == "**":
                state += 1
                states.add(state)
        return frozenset(states)

    def start(self) -> frozenset[int]:
        return self._closure({0})

    def step(self, states: frozenset[int], name: str) -> frozenset[int]:
        """Return the states after one more name (empty: nothing at or below it matches)."""
        hidden = name.startswith(".")
        after: set[int] = set()
        for state in states:
            if state >= len(self.names):
                continue
            part = self.names[state]
            if part == "**":
                if not hidden:
                    after.add(state)
            elif (not hidden or part.startswith(".")) and fnmatch.fnmatchcase(name, part):
                after.add(state + 1)
        return self._closure(after)

    def matches(self, states: frozenset[int]) -> bool:
        """Whether the path that led to ``states`` matches the whole pattern."""
        return len(self.names) in states

    def descends(self, states: frozenset[int]) -> bool:
        """Whether something below the directory that led to ``states`` can still match."""
        return any(state < len(self.names) for state in states)


def _clean_pattern(value: str) -> str:
    try:
        return GlobPattern.parse(value).text
    except ValueError as exc:
        raise ValidationError(str(exc), code="pattern") from exc


class FileCleanupOptions(forms.Form):
    directory = forms.CharField(
        max_length=4096,
        help_text=_(
            "Absolute path of the directory to clean; it must resolve to one of "
            "SCHEDULING_FILE_CLEANUP_ROOTS or a directory below one."
        ),
    )
    pattern = forms.CharField(
        required=False,
        max_length=1024,
        initial="*",
        help_text=_(
            "Glob of the files to delete, relative to the directory: '*.log' (top level), "
            "'**/*.tmp' (any depth). Default '*'."
        ),
    )
    older_than_hours = forms.IntegerField(
        required=False,
        min_value=1,
        help_text=_(
            "Delete files last modified more than this many hours ago; empty: the cleanup "
            "config's retain_days."
        ),
    )
    dry_run = forms.BooleanField(
        required=False,
        help_text=_("Delete nothing; report what would be deleted."),
    )

    def clean_directory(self) -> str:
        directory: str = self.cleaned_data["directory"]
        allowed_directory(directory)
        # Stored as given: it is resolved again at every run.
        return directory

    def clean_pattern(self) -> str:
        return _clean_pattern(self.cleaned_data.get("pattern") or "")


@dataclass
class _Walk:
    """One run's walk over a directory tree, with its counters."""

    pattern: GlobPattern
    cutoff: float
    dry_run: bool
    limit: int
    context: ExecutionContext
    deleted: int = 0
    byte_count: int = 0
    kept: int = 0
    skipped: int = 0
    paths: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    error_count: int = 0
    stopped: str | None = None
    # The slowest step so far (a directory listed, a file deleted), in seconds.
    slowest: float = 0.0

    def error(self, path: str, exc: OSError) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append({"path": path, "error": exc.strerror or str(exc)})

    def out_of_time(self) -> bool:
        # Stop while a step as slow as the slowest one so far still fits in the timeout.
        if self.stopped is None and self.context.remaining <= 2 * self.slowest:
            self.stopped = "time"
        return self.stopped is not None

    def timed(self, started: float) -> None:
        self.slowest = max(self.slowest, time.monotonic() - started)

    def walk(self, fd: int, rel: str, states: frozenset[int], depth: int = 0) -> None:
        started = time.monotonic()
        try:
            # Listed first, then acted on (as shutil.rmtree does): no unlinks during readdir.
            with os.scandir(fd) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            self.error(rel or ".", exc)
            return
        self.timed(started)
        for entry in entries:
            if self.out_of_time():
                return
            after = self.pattern.step(states, entry.name)
            if not after:
                continue
            path = f"{rel}/{entry.name}" if rel else entry.name
            matched = self.pattern.matches(after)
            try:
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
                is_file = not is_link and not is_dir and entry.is_file(follow_symlinks=False)
            except OSError as exc:
                self.error(path, exc)
                continue
            if is_dir and self.pattern.descends(after):
                self.descend(fd, entry.name, path, after, depth + 1)
                if self.stopped is not None:
                    return
            if not matched:
                continue
            if is_file:
                self.consider(fd, entry, path)
                if self.stopped is not None:
                    return
            else:
                # Links (to anything, anywhere), directories and special files: never deleted.
                self.skipped += 1

    def descend(
        self, parent: int, name: str, path: str, states: frozenset[int], depth: int
    ) -> None:
        if depth > MAX_DEPTH:
            self.error(path, OSError(errno.ELOOP, f"Deeper than {MAX_DEPTH} directories"))
            return
        try:
            # O_NOFOLLOW: a directory replaced by a link since it was listed is not entered.
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            return
        except OSError as exc:
            self.error(path, exc)
            return
        try:
            self.walk(fd, path, states, depth)
        finally:
            os.close(fd)

    def consider(self, parent: int, entry: os.DirEntry[str], path: str) -> None:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return  # gone meanwhile
        except OSError as exc:
            self.error(path, exc)
            return
        if not stat.S_ISREG(info.st_mode):
            self.skipped += 1
            return
        if info.st_mtime >= self.cutoff:
            self.kept += 1
            return
        if self.deleted >= self.limit:
            self.stopped = "batch_size"
            return
        if not self.dry_run:
            started = time.monotonic()
            try:
                os.unlink(entry.name, dir_fd=parent)
            except FileNotFoundError:
                return
            except OSError as exc:
                self.error(path, exc)
                return
            finally:
                self.timed(started)
        self.deleted += 1
        self.byte_count += info.st_size
        if len(self.paths) < MAX_LISTED:
            self.paths.append(path)


def purge_files(
    cleanup: CleanupConfig, context: ExecutionContext, options: dict[str, Any]
) -> dict[str, Any]:
    """Run the ``files`` cleanup of ``cleanup`` with its cleaned ``options``; return the result."""
    if cleanup.tenant_id is not None:
        raise FileCleanupRefused(
            "The files cleanup target runs only as a system schedule (no tenant)."
        )
    try:
        directory = allowed_directory(str(options.get("directory") or ""))
    except ValidationError as exc:
        raise FileCleanupRefused(" ".join(exc.messages)) from None
    if not _fd_walk_supported():
        raise FileCleanupRefused(
            "File cleanup needs a platform that opens and deletes files relative to a "
            "directory descriptor (Linux, the BSDs, macOS)."
        )
    try:
        pattern = GlobPattern.parse(str(options.get("pattern") or "*"))
    except ValueError as exc:
        raise FileCleanupRefused(str(exc)) from None
    hours = options.get("older_than_hours") or cleanup.retain_days * 24
    cutoff = context.now() - timedelta(hours=hours)
    dry_run = bool(options.get("dry_run"))
    walk = _Walk(
        pattern=pattern,
        cutoff=cutoff.timestamp(),
        dry_run=dry_run,
        limit=max(1, cleanup.batch_size or conf.CLEANUP_BATCH_SIZE),
        context=context,
    )
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as exc:
        raise FileCleanupRefused(
            f"Cannot open the directory {directory}: {exc.strerror or exc}."
        ) from None
    try:
        walk.walk(fd, "", pattern.start())
    finally:
        os.close(fd)
    if walk.error_count:
        context.logger.warning(
            "File cleanup of %s: %s file(s) could not be deleted or read.",
            directory,
            walk.error_count,
        )
    return {
        "target": "files",
        "directory": directory,
        "pattern": pattern.text,
        "older_than_hours": hours,
        "cutoff": cutoff.isoformat(),
        "dry_run": dry_run,
        "deleted": walk.deleted,
        "bytes": walk.byte_count,
        "paths": walk.paths,
        "paths_truncated": walk.deleted > len(walk.paths),
        "kept": walk.kept,
        "skipped": walk.skipped,
        "errors": walk.errors,
        "error_count": walk.error_count,
        "complete": walk.stopped is None,
        "stopped": walk.stopped,
    }
