"""export, import and validate through the command, in both output formats."""

from __future__ import annotations

import json

import pytest
import yaml

from scheduling.models import AuditEntry, PeriodicScan, Schedule
from tests.scheduling.cli.conftest import cli

pytestmark = pytest.mark.django_db

BAD_ENTRY = """\
- tenant: acme
  kind: scan
  name: Broken
  scan_type: test_echo
  target: x
  trigger_type: cron
  cron_expression: every tuesday
"""


def rows() -> list[tuple]:
    return list(Schedule.objects.order_by("pk").values_list("pk", "name", "updated_at"))


class TestExport:
    def test_yaml_to_stdout_by_default(self, world):
        result = cli("export", "--tenant", "acme")
        assert result.code == 0
        data = yaml.safe_load(result.out)
        assert data["version"] == 1
        assert [(e["tenant"], e["kind"], e["name"]) for e in data["schedules"]] == [
            ("acme", "cleanup", "Old rows"),
            ("acme", "report", "Nightly"),
            ("acme", "scan", "Homepage"),
        ]

    def test_json_file_by_extension_or_flag(self, world, tmp_path):
        target = tmp_path / "schedules.json"
        result = cli("export", "--output", str(target))
        assert result.code == 0
        assert "Exported 4 schedule(s)" in result.out
        assert len(json.loads(target.read_text())["schedules"]) == 4
        as_json = cli("export", "--kind", "report", "--format", "json").out
        assert [e["name"] for e in json.loads(as_json)["schedules"]] == ["Nightly"]

    def test_an_unwritable_output_is_bad_input(self, world, tmp_path):
        result = cli("export", "--output", str(tmp_path / "missing" / "x.yaml"))
        assert result.code == 2
        assert result.err.startswith("Cannot write")


class TestImport:
    def test_export_wipe_import_restores_the_schedules(self, world, tmp_path):
        target = tmp_path / "all.yaml"
        cli("export", "-o", str(target))
        exported = target.read_text()
        Schedule.objects.all().delete()

        result = cli("import", str(target))

        assert result.code == 0, result.err
        assert "Done: create 4, update 0, delete 0; 0 unchanged." in result.out
        cli("export", "-o", str(target))
        assert target.read_text() == exported
        assert AuditEntry.objects.filter(action="create", source="cli").count() == 4

    def test_dry_run_prints_the_diff_and_changes_nothing(self, world, tmp_path):
        target = tmp_path / "acme.yaml"
        cli("export", "--tenant", "acme", "-o", str(target))
        text = target.read_text().replace("interval_seconds: 300", "interval_seconds: 600")
        text = text.replace("name: Old rows", "name: New rows")
        target.write_text(text)
        before = rows()

        table = cli("import", str(target), "--dry-run", "--prune")
        data = cli("import", str(target), "--dry-run", "--prune", "--format", "json").data

        assert table.code == 0
        assert "~ update acme/scan/Homepage" in table.out
        assert "    interval_seconds: 300 -> 600" in table.out
        assert "+ create acme/cleanup/New rows" in table.out
        assert "- delete acme/cleanup/Old rows" in table.out
        assert "Would create 1, update 1, delete 1; 1 unchanged." in table.out
        assert data["dry_run"] is True and data["applied"] is False
        assert data["summary"] == {"create": 1, "update": 1, "delete": 1, "unchanged": 1}
        assert {(c["action"], c["name"]) for c in data["changes"]} == {
            ("update", "Homepage"),
            ("create", "New rows"),
            ("delete", "Old rows"),
        }
        assert rows() == before

        applied = cli("import", str(target), "--prune", "--format", "json").data
        assert applied["applied"] is True
        names = set(Schedule.objects.filter(tenant=world.acme).values_list("name", flat=True))
        assert names == {"Homepage", "Nightly", "New rows"}
        assert PeriodicScan.objects.get(pk=world.scan.pk).interval_seconds == 600
        assert Schedule.objects.filter(pk=world.other.pk).exists()  # not in the file's tenants

    def test_a_file_with_one_bad_entry_changes_nothing_and_exits_2(self, world, tmp_path):
        target = tmp_path / "acme.yaml"
        cli("export", "--tenant", "acme", "-o", str(target))
        target.write_text(
            target.read_text().replace("interval_seconds: 300", "interval_seconds: 600") + BAD_ENTRY
        )
        before = rows()

        result = cli("import", str(target), "--prune")

        assert result.code == 2
        assert result.err == f"{target}: 1 error(s); nothing was changed."
        [line] = [ln for ln in result.out.splitlines() if "Broken" in ln]
        assert line.startswith(f"{target}: schedules[3], line ")
        assert "cron_expression: Invalid cron expression" in line
        assert rows() == before
        assert not AuditEntry.objects.exists()

        data = cli("import", str(target), "--format", "json").data
        assert data["valid"] is False and data["applied"] is False
        [error] = data["errors"]
        assert (error["index"], error["field"], error["name"]) == (3, "cron_expression", "Broken")
        assert isinstance(error["line"], int)

    def test_unparsable_files_exit_2_with_the_position(self, world, tmp_path):
        target = tmp_path / "broken.yaml"
        target.write_text("version: 1\nschedules: [\n  {tenant: acme\n")
        result = cli("import", str(target))
        assert result.code == 2
        assert result.err.startswith(f"{target}: line ")
        assert "not valid YAML" in result.err

    def test_a_viewer_cannot_import(self, world, tmp_path):
        from tests.factories import make_membership, make_user

        make_membership(user=make_user(username="vera"), tenant=world.acme, role="viewer")
        target = tmp_path / "acme.yaml"
        cli("export", "--tenant", "acme", "-o", str(target))
        result = cli("import", str(target), "--tenant", "acme", "--user", "vera")
        assert (result.code, result.err) == (2, "Your role in tenant 'acme' does not allow import.")
        without_tenant = cli("import", str(target), "--user", "vera", "--format", "json")
        assert without_tenant.code == 2
        assert without_tenant.data["errors"][0]["message"] == "unknown tenant 'acme'"


class TestValidate:
    def test_a_good_file_is_valid_in_both_formats(self, world, tmp_path):
        target = tmp_path / "all.json"
        cli("export", "-o", str(target))
        table = cli("validate", str(target))
        assert table.code == 0
        assert table.out.strip() == f"{target}: 4 schedule(s) valid."
        data = cli("validate", str(target), "--format", "json").data
        assert data == {"source": str(target), "valid": True, "errors": [], "warnings": []}

    def test_a_bad_file_lists_each_error_and_exits_2(self, world, tmp_path):
        target = tmp_path / "bad.yaml"
        target.write_text("version: 1\nschedules:\n" + BAD_ENTRY + BAD_ENTRY.replace("acme", "x"))
        result = cli("validate", str(target))
        assert result.code == 2
        assert result.err == f"{target}: 2 error(s)."
        assert len(result.out.strip().splitlines()) == 2
        data = cli("validate", str(target), "--format", "json").data
        assert [(e["index"], e["line"], e["field"]) for e in data["errors"]] == [
            (0, 9, "cron_expression"),
            (1, 10, "tenant"),
        ]

    def test_the_database_with_problems(self, world):
        PeriodicScan.objects.filter(pk=world.scan.pk).update(scan_type="gone")
        table = cli("validate", "--tenant", "acme")
        assert table.code == 2
        assert "database: schedule" in table.out and "scan_type" in table.out
        data = cli("validate", "--format", "json").data
        assert data["source"] == "database"
        assert [(e["schedule_id"], e["field"]) for e in data["errors"]] == [
            (world.scan.pk, "scan_type")
        ]
        assert cli("validate", "--tenant", "umbrella").code == 0
