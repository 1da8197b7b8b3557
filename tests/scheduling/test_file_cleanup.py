"""The ``files`` cleanup target on real files, and row targets with an expiry field."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling.builtin.files import FileCleanupRefused, purge_files
from scheduling.checks import check_settings
from scheduling.context import ExecutionContext
from scheduling.exceptions import SchedulingError
from scheduling.kinds.cleanup import run_cleanup_config
from scheduling.models import CleanupConfig, ReportArtifact
from scheduling.registry import cleanup_target, cleanup_targets
from tests.factories import make_artifact, make_execution, make_report, make_tenant

pytestmark = pytest.mark.django_db

HOUR = 3600


def touch(path: Path, *, hours_old: float, size: int = 10) -> Path:
    """Write ``size`` bytes to ``path`` and set its modification time ``hours_old`` ago."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    then = time.time() - hours_old * HOUR
    os.utime(path, (then, then))
    return path


def age_link(path: Path, *, hours_old: float) -> None:
    """Make a symbolic link itself (not its target) look old."""
    then = time.time() - hours_old * HOUR
    os.utime(path, (then, then), follow_symlinks=False)


@pytest.fixture
def root(tmp_path, settings) -> Path:
    """The one directory SCHEDULING_FILE_CLEANUP_ROOTS allows."""
    directory = tmp_path / "root"
    directory.mkdir()
    settings.SCHEDULING_FILE_CLEANUP_ROOTS = [str(directory)]
    return directory


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory next to the root, with old files that must never be touched."""
    directory = tmp_path / "outside"
    touch(directory / "secret.log", hours_old=1000)
    touch(directory / "dir" / "inner.log", hours_old=1000)
    return directory


def files_cleanup(
    directory: Path | str, *, retain_days: int = 1, batch_size: int = 1000, **options
):
    """A system cleanup config of the ``files`` target (saved without validation)."""
    return CleanupConfig.objects.create(
        tenant=None,
        name=f"files {time.monotonic_ns()}",
        trigger_type="interval",
        interval_seconds=HOUR,
        cleanup_target="files",
        retain_days=retain_days,
        batch_size=batch_size,
        options={"directory": str(directory), **options},
    )


def run(cleanup: CleanupConfig, *, timeout: float = 60) -> dict:
    context = ExecutionContext(
        execution=None,
        schedule=cleanup,
        tenant=cleanup.tenant,
        scheduled_for=timezone.now(),
        timeout=timeout,
    )
    return run_cleanup_config(cleanup, context)


def tree(directory: Path) -> set[str]:
    """Every path below ``directory`` (links not followed), relative to it."""
    found = set()
    for base, dirs, files in os.walk(directory):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(base, name), directory))
    return found


# -- what it deletes ------------------------------------------------------------------------


def test_old_files_are_deleted_young_ones_kept_and_bytes_counted(root):
    touch(root / "old.log", hours_old=48, size=100)
    touch(root / "old.txt", hours_old=25, size=50)
    touch(root / "young.log", hours_old=23, size=7)

    result = run(files_cleanup(root, retain_days=1))

    assert tree(root) == {"young.log"}
    assert result["deleted"] == 2
    assert result["bytes"] == 150
    assert sorted(result["paths"]) == ["old.log", "old.txt"]
    assert result["kept"] == 1
    assert result["errors"] == [] and result["error_count"] == 0
    assert result["complete"] is True and result["stopped"] is None
    assert result["dry_run"] is False
    assert result["older_than_hours"] == 24
    assert result["pattern"] == "*"
    assert result["directory"] == os.path.realpath(root)


def test_older_than_hours_overrides_retain_days(root):
    touch(root / "three-hours.log", hours_old=3)
    touch(root / "one-hour.log", hours_old=1)

    result = run(files_cleanup(root, retain_days=30, older_than_hours=2))

    assert tree(root) == {"one-hour.log"}
    assert result["older_than_hours"] == 2


def test_pattern_without_double_star_matches_the_top_level_only(root):
    touch(root / "a.log", hours_old=48)
    touch(root / "a.txt", hours_old=48)
    touch(root / "sub" / "b.log", hours_old=48)

    result = run(files_cleanup(root, pattern="*.log"))

    assert result["paths"] == ["a.log"]
    assert tree(root) == {"a.txt", "sub", "sub/b.log"}


def test_pattern_with_a_directory_name(root):
    touch(root / "cache" / "a.bin", hours_old=48)
    touch(root / "cache" / "deeper" / "b.bin", hours_old=48)
    touch(root / "other" / "c.bin", hours_old=48)

    result = run(files_cleanup(root, pattern="cache/*.bin"))

    assert result["paths"] == ["cache/a.bin"]
    assert "cache/deeper/b.bin" in tree(root)
    assert "other/c.bin" in tree(root)


def test_recursive_pattern_matches_at_every_depth_but_not_hidden_names(root):
    touch(root / "a.log", hours_old=48)
    touch(root / "sub" / "b.log", hours_old=48)
    touch(root / "sub" / "deeper" / "c.log", hours_old=48)
    touch(root / "sub" / "c.txt", hours_old=48)
    touch(root / "sub" / "young.log", hours_old=1)
    touch(root / ".hidden" / "d.log", hours_old=48)
    touch(root / ".e.log", hours_old=48)

    result = run(files_cleanup(root, pattern="**/*.log"))

    assert sorted(result["paths"]) == ["a.log", "sub/b.log", "sub/deeper/c.log"]
    assert tree(root) == {
        ".e.log",
        ".hidden",
        ".hidden/d.log",
        "sub",
        "sub/c.txt",
        "sub/deeper",
        "sub/young.log",
    }
    # A pattern name that starts with a dot matches hidden names.
    run(files_cleanup(root, pattern=".*"))
    assert ".e.log" not in tree(root)


def test_directories_are_never_deleted(root):
    touch(root / "sub" / "deeper" / "old.log", hours_old=48)
    (root / "empty").mkdir()
    for directory in (root / "sub" / "deeper", root / "sub", root / "empty"):
        then = time.time() - 100 * HOUR
        os.utime(directory, (then, then))

    result = run(files_cleanup(root, pattern="**"))

    assert result["paths"] == ["sub/deeper/old.log"]
    assert tree(root) == {"sub", "sub/deeper", "empty"}
    # The three directories matched "**" and were skipped, not deleted.
    assert result["skipped"] == 3


def test_special_files_are_skipped(root):
    os.mkfifo(root / "pipe.log")
    then = time.time() - 48 * HOUR
    os.utime(root / "pipe.log", (then, then))

    result = run(files_cleanup(root, pattern="*.log"))

    assert result["deleted"] == 0
    assert result["skipped"] == 1
    assert stat.S_ISFIFO(os.lstat(root / "pipe.log").st_mode)


# -- symbolic links ---------------------------------------------------------------------------


def test_links_out_of_the_root_are_neither_followed_nor_deleted(root, outside):
    (root / "file-link.log").symlink_to(outside / "secret.log")
    (root / "dir-link").symlink_to(outside / "dir", target_is_directory=True)
    age_link(root / "file-link.log", hours_old=1000)
    age_link(root / "dir-link", hours_old=1000)
    touch(root / "own.log", hours_old=48)

    result = run(files_cleanup(root, pattern="**"))

    assert result["paths"] == ["own.log"]
    assert tree(outside) == {"secret.log", "dir", "dir/inner.log"}
    assert (root / "file-link.log").is_symlink()
    assert (root / "dir-link").is_symlink()
    assert result["skipped"] == 2
    assert not any(path.startswith("dir-link") for path in result["paths"])


def test_a_link_inside_the_root_is_kept_while_its_target_is_judged_on_its_own(root):
    touch(root / "real.log", hours_old=48)
    touch(root / "recent.log", hours_old=1)
    (root / "alias.log").symlink_to(root / "real.log")
    (root / "alias-of-recent.log").symlink_to(root / "recent.log")
    age_link(root / "alias.log", hours_old=1000)
    age_link(root / "alias-of-recent.log", hours_old=1000)

    result = run(files_cleanup(root, pattern="*.log"))

    assert result["paths"] == ["real.log"]
    assert result["skipped"] == 2
    # Links are never deleted: the link stays (now dangling), and an old link never takes
    # its recent target with it.
    assert (root / "alias.log").is_symlink()
    assert (root / "recent.log").exists()


def test_a_directory_that_links_out_of_the_root_is_rejected(root, outside):
    (root / "escape").symlink_to(outside, target_is_directory=True)
    cleanup = files_cleanup(root / "escape", pattern="**")

    with pytest.raises(ValidationError) as info:
        cleanup.full_clean()
    message = " ".join(info.value.message_dict["options"])
    assert "not inside SCHEDULING_FILE_CLEANUP_ROOTS" in message
    assert str(outside) in message

    # Saved anyway (bypassing validation): refused at run time, nothing touched.
    with pytest.raises(ValidationError, match="not inside SCHEDULING_FILE_CLEANUP_ROOTS"):
        run(cleanup)
    assert tree(outside) == {"secret.log", "dir", "dir/inner.log"}


def test_a_directory_that_links_within_the_root_is_allowed(root):
    touch(root / "real" / "old.log", hours_old=48)
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    cleanup = files_cleanup(root / "alias")
    cleanup.full_clean()

    result = run(cleanup)

    assert result["directory"] == os.path.realpath(root / "real")
    assert tree(root) == {"real", "alias"}


def test_dotdot_that_escapes_the_root_is_rejected(root, outside):
    (root / "sub").mkdir()
    escaping = files_cleanup(f"{root}/sub/../../outside")
    with pytest.raises(ValidationError) as info:
        escaping.full_clean()
    assert "not inside SCHEDULING_FILE_CLEANUP_ROOTS" in " ".join(
        info.value.message_dict["options"]
    )
    with pytest.raises(ValidationError):
        run(escaping)
    assert tree(outside) == {"secret.log", "dir", "dir/inner.log"}

    # ``..`` that stays inside is fine.
    files_cleanup(f"{root}/sub/../sub").full_clean()


# -- refusals ---------------------------------------------------------------------------------


def test_empty_roots_refuse_at_validation_and_at_run_time(root, settings):
    touch(root / "old.log", hours_old=48)
    cleanup = files_cleanup(root)
    cleanup.full_clean()  # valid while the root is allowed

    settings.SCHEDULING_FILE_CLEANUP_ROOTS = []

    with pytest.raises(ValidationError) as info:
        cleanup.full_clean()
    assert "SCHEDULING_FILE_CLEANUP_ROOTS is empty" in " ".join(info.value.message_dict["options"])
    with pytest.raises(ValidationError, match="SCHEDULING_FILE_CLEANUP_ROOTS is empty"):
        run(cleanup)
    # The handler checks again on its own (roots may change between validation and the walk).
    with pytest.raises(FileCleanupRefused, match="SCHEDULING_FILE_CLEANUP_ROOTS is empty"):
        purge_files(cleanup, context_for(cleanup), {"directory": str(root)})
    assert tree(root) == {"old.log"}


def test_roots_changed_after_saving_refuse_the_run(root, tmp_path, settings):
    touch(root / "old.log", hours_old=48)
    cleanup = files_cleanup(root)
    cleanup.full_clean()

    settings.SCHEDULING_FILE_CLEANUP_ROOTS = [str(tmp_path / "elsewhere")]

    with pytest.raises(ValidationError, match="not inside"):
        run(cleanup)
    assert tree(root) == {"old.log"}


def test_a_tenants_cleanup_config_may_not_use_the_files_target(root):
    touch(root / "old.log", hours_old=48)
    cleanup = files_cleanup(root)
    cleanup.tenant = make_tenant()
    cleanup.save()

    with pytest.raises(ValidationError) as info:
        cleanup.full_clean()
    assert "system schedule" in " ".join(info.value.message_dict["cleanup_target"])
    with pytest.raises(SchedulingError, match="system schedule"):
        run(cleanup)
    with pytest.raises(FileCleanupRefused, match="system schedule"):
        purge_files(cleanup, context_for(cleanup), {"directory": str(root)})
    assert tree(root) == {"old.log"}


def test_a_missing_directory_fails_the_run(root):
    with pytest.raises(FileCleanupRefused, match="does-not-exist"):
        run(files_cleanup(root / "does-not-exist"))


@pytest.mark.parametrize(
    ("options", "field", "text"),
    [
        ({"directory": "relative/path"}, "directory", "absolute path"),
        ({"directory": "/"}, "directory", "not inside"),
        ({"pattern": "../*"}, "pattern", "'..'"),
        ({"pattern": "/etc/*"}, "pattern", "relative"),
        ({"pattern": "logs/"}, "pattern", "trailing"),
        ({"older_than_hours": 0}, "older_than_hours", "greater than or equal to 1"),
        ({"recursive": True}, None, "Unknown option"),
    ],
)
def test_bad_options_are_rejected_at_save_time(root, options, field, text):
    cleanup = files_cleanup(root)
    cleanup.options = {**cleanup.options, **options}
    with pytest.raises(ValidationError) as info:
        cleanup.full_clean()
    messages = " ".join(info.value.message_dict["options"])
    assert text in messages
    if field:
        assert messages.startswith(f"{field}:")


def test_valid_options_are_cleaned_with_the_default_pattern(root):
    cleanup = files_cleanup(root, dry_run=True)
    cleanup.full_clean()
    assert cleanup.options == {"directory": str(root), "pattern": "*", "dry_run": True}


# -- dry run, errors, limits ------------------------------------------------------------------


def test_dry_run_deletes_nothing_and_reports_what_it_would_delete(root):
    touch(root / "a.log", hours_old=48, size=30)
    touch(root / "sub" / "b.log", hours_old=48, size=12)
    touch(root / "young.log", hours_old=1)
    before = tree(root)

    result = run(files_cleanup(root, pattern="**/*.log", dry_run=True))

    assert tree(root) == before
    assert result["dry_run"] is True
    assert result["deleted"] == 2
    assert result["bytes"] == 42
    assert sorted(result["paths"]) == ["a.log", "sub/b.log"]
    assert result["kept"] == 1


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block without root's right to ignore permissions (no-op for other users)."""
    if os.geteuid() != 0:
        yield
        return
    try:
        nobody = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        nobody = 65534
    os.seteuid(nobody)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def shared_root(tmp_path, settings) -> Iterator[Path]:
    """A root that an unprivileged user can traverse (pytest's tmp_path is private to root)."""
    if os.geteuid() != 0:
        directory = tmp_path / "root"
        directory.mkdir()
    else:
        directory = Path(tempfile.mkdtemp(prefix="file-cleanup-"))
    directory.chmod(0o777)
    settings.SCHEDULING_FILE_CLEANUP_ROOTS = [str(directory)]
    yield directory
    for base, dirs, _files in os.walk(directory):
        for name in dirs:
            os.chmod(os.path.join(base, name), 0o700)
    if os.geteuid() == 0:
        shutil.rmtree(directory)


def test_a_permission_error_is_recorded_and_the_rest_continues(shared_root):
    root = shared_root
    touch(root / "a-locked" / "old.log", hours_old=48)
    touch(root / "b-open" / "old.log", hours_old=48, size=5)
    touch(root / "top.log", hours_old=48, size=3)
    (root / "a-locked").chmod(0o555)  # its files cannot be unlinked
    (root / "b-open").chmod(0o777)
    cleanup = files_cleanup(root, pattern="**/*.log")

    with unprivileged():
        result = run(cleanup)

    assert result["error_count"] == 1
    assert result["errors"] == [{"path": "a-locked/old.log", "error": "Permission denied"}]
    assert sorted(result["paths"]) == ["b-open/old.log", "top.log"]
    assert result["bytes"] == 8
    assert result["complete"] is True
    assert (root / "a-locked" / "old.log").exists()
    assert not (root / "b-open" / "old.log").exists()


def test_an_unreadable_directory_is_recorded_and_the_rest_continues(shared_root):
    root = shared_root
    touch(root / "a-sealed" / "old.log", hours_old=48)
    touch(root / "b.log", hours_old=48)
    (root / "a-sealed").chmod(0o000)
    cleanup = files_cleanup(root, pattern="**")

    with unprivileged():
        result = run(cleanup)

    assert result["errors"] == [{"path": "a-sealed", "error": "Permission denied"}]
    assert result["paths"] == ["b.log"]


def test_out_of_time_stops_before_deleting_and_says_so(root):
    touch(root / "old.log", hours_old=48)

    result = run(files_cleanup(root), timeout=0)

    assert result["deleted"] == 0
    assert result["complete"] is False
    assert result["stopped"] == "time"
    assert tree(root) == {"old.log"}


def test_batch_size_caps_one_run_and_the_next_run_continues(root):
    for n in range(5):
        touch(root / f"{n}.log", hours_old=48)
    cleanup = files_cleanup(root, batch_size=2)

    first = run(cleanup)
    assert (first["deleted"], first["complete"], first["stopped"]) == (2, False, "batch_size")
    second = run(cleanup)
    assert (second["deleted"], second["complete"]) == (2, False)
    third = run(cleanup)
    assert (third["deleted"], third["complete"], third["stopped"]) == (1, True, None)
    assert tree(root) == set()


def test_the_list_of_deleted_paths_is_bounded(root):
    for n in range(120):
        touch(root / f"{n:03}.tmp", hours_old=48, size=1)

    result = run(files_cleanup(root))

    assert result["deleted"] == 120
    assert result["bytes"] == 120
    assert len(result["paths"]) == 100
    assert result["paths_truncated"] is True


def context_for(cleanup: CleanupConfig) -> ExecutionContext:
    return ExecutionContext(
        execution=None,
        schedule=cleanup,
        tenant=cleanup.tenant,
        scheduled_for=timezone.now(),
        timeout=60,
    )


# -- the setting's system check ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["/srv/tmp", ["relative/dir"], ["/srv/ok", ""], [42], {"/srv/tmp": True}],
)
def test_bad_file_cleanup_roots_are_reported(settings, value):
    settings.SCHEDULING_FILE_CLEANUP_ROOTS = value
    errors = [e for e in check_settings() if e.id == "scheduling.E045"]
    assert len(errors) == 1
    assert "SCHEDULING_FILE_CLEANUP_ROOTS" in errors[0].msg
    assert errors[0].hint


@pytest.mark.parametrize("value", [[], ["/srv/tmp", Path("/srv/exports")], ("/srv/cache",)])
def test_good_file_cleanup_roots_pass(settings, value):
    settings.SCHEDULING_FILE_CLEANUP_ROOTS = value
    assert "scheduling.E045" not in {e.id for e in check_settings()}


# -- row targets with an expiry field ---------------------------------------------------------

EXPIRING = "test_expiring_artifacts"


@pytest.fixture
def expiring_target():
    """Artifacts whose ``created_at`` stands in for an expiry time."""
    entry = cleanup_target(
        EXPIRING,
        label="Expiring artifacts",
        model="scheduling.ReportArtifact",
        expiry_field="created_at",
    )
    yield entry
    cleanup_targets.unregister(EXPIRING)


def test_an_expiry_field_target_deletes_the_expired_rows_in_batches(tenant, expiring_target):
    now = timezone.now()

    def artifact(owner, expires_in: timedelta) -> ReportArtifact:
        execution = make_execution(schedule=make_report(tenant=owner))
        return make_artifact(execution=execution, created_at=now + expires_in)

    expired = [artifact(tenant, -timedelta(minutes=5 + n)) for n in range(5)]
    valid = [artifact(tenant, timedelta(hours=1)), artifact(tenant, timedelta(days=400))]
    foreign = artifact(make_tenant(), -timedelta(days=1))
    # retain_days would keep all of them: an expiry field ignores it.
    cleanup = CleanupConfig.objects.create(
        tenant=tenant,
        name="expire",
        trigger_type="interval",
        interval_seconds=HOUR,
        cleanup_target=EXPIRING,
        retain_days=365,
        batch_size=2,
    )
    cleanup.full_clean()

    result = run(cleanup)

    assert result["deleted"] == 5
    assert result["batches"] == 3
    assert result["expiry_field"] == "created_at"
    assert "retain_days" not in result
    assert result["complete"] is True
    remaining = set(ReportArtifact.objects.values_list("pk", flat=True))
    assert not remaining & {a.pk for a in expired}
    assert {a.pk for a in valid} | {foreign.pk} <= remaining


def test_cleanup_target_needs_exactly_one_of_datetime_and_expiry_field():
    with pytest.raises(ValueError, match="exactly one"):
        cleanup_target("bad", label="Bad", model="scheduling.ReportArtifact")
    with pytest.raises(ValueError, match="exactly one"):
        cleanup_target(
            "bad",
            label="Bad",
            model="scheduling.ReportArtifact",
            datetime_field="created_at",
            expiry_field="created_at",
        )
    with pytest.raises(ValueError, match="purge"):
        cleanup_target(
            "bad",
            label="Bad",
            model="scheduling.ReportArtifact",
            purge=lambda cleanup, context, options: {},
        )
    assert "bad" not in cleanup_targets
