"""The schedule form asks for what a person knows (issue 18, items 2, 3, 7, 9 and 10).

The registered type is a choice and its options are fields of their own, validated beside each
field; times are read and shown in the schedule's zone, which the form names; one save reports
every wrong field; help texts give the values in force; the pause page has its widgets' styles.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import override_settings
from django.urls import reverse

from scheduling.models import AuditEntry, CleanupConfig, PeriodicScan, Report, ScheduledTask
from scheduling.registry import scan_types, task_types
from tests.factories import make_membership, make_scan, make_task, make_tenant, make_user
from tests.scheduling.admin.test_admin import add_form

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin (CET)
ADD = "admin:scheduling_periodicscan_add"
CHANGE = "admin:scheduling_periodicscan_change"


@pytest.fixture
def berlin(db):
    return make_tenant(name="Berlin", slug="berlin", timezone="Europe/Berlin")


def page_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def form_of(response):
    return response.context["adminform"].form


def fieldset_classes(response) -> dict[str, list[str]]:
    return {str(fs.name): fs.classes.split() for fs in response.context["adminform"]}


def base_form(tenant, **overrides):
    """What every kind's add form posts, without the kind's own fields."""
    data = add_form(tenant, **overrides)
    for name in ("scan_type", "target", "options"):
        if name not in overrides:
            data.pop(name)
    return data


# -- item 2: the type is a choice, its options are fields ------------------------------------


def test_the_type_is_a_choice_of_the_registered_types_and_no_json_box_is_shown(
    superuser_client,
):
    response = superuser_client.get(reverse(ADD))
    form = form_of(response)
    assert form.fields["scan_type"].choices == [
        ("", "---------"),
        *((entry.key, entry.label) for entry in scan_types),
    ]
    assert "options" not in form.fields
    page = page_of(response)
    assert 'name="options"' not in page
    # Each type's options, with their own labels and help texts.
    assert '<label for="id_options-test_sleep-seconds">Seconds:</label>' in page
    assert "append a line to this file" in page  # test_sleep's "record" help text
    assert '<label for="id_options-http-expected_status">Expected status:</label>' in page


def test_only_the_chosen_types_options_are_open_without_javascript(superuser_client, berlin):
    scan = make_scan(tenant=berlin, scan_type="test_sleep", target="x")
    classes = fieldset_classes(superuser_client.get(reverse(CHANGE, args=[scan.pk])))
    assert "collapse" not in classes["Options of Test: sleep"]
    assert "collapse" in classes["Options of HTTP check"]
    assert "scheduling-options-http" in classes["Options of HTTP check"]
    # A type without options has no fieldset.
    assert not any("Test: echo" in name for name in classes)
    # The add page opens the type asked for in its address, as the admin does for any field.
    added = superuser_client.get(reverse(ADD) + "?scan_type=http")
    assert "collapse" not in fieldset_classes(added)["Options of HTTP check"]


def test_options_are_saved_as_the_types_form_cleans_them(superuser_client, berlin):
    data = add_form(
        berlin,
        scan_type="test_sleep",
        **{
            "options-test_sleep-seconds": "2.5",
            "options-test_sleep-fail": "on",
            "options-test_sleep-record": "",
            # Another type's fields on the same page are not the schedule's.
            "options-http-keyword": "ignored",
        },
    )
    response = superuser_client.post(reverse(ADD), data)
    assert response.status_code == 302, form_of(response).errors
    scan = PeriodicScan.objects.get(name="nightly")
    # The same JSON the API stores for these options; the empty one keeps the type's default.
    assert scan.options == {"seconds": 2.5, "fail": True}
    assert scan.options == scan_types.get("test_sleep").validate_options(
        {"seconds": 2.5, "fail": True}
    )


def test_a_wrong_option_is_an_error_beside_its_field_and_saves_nothing(superuser_client, berlin):
    data = add_form(
        berlin,
        scan_type="http",
        target="https://example.com/",
        **{
            "options-http-method": "HEAD",
            "options-http-keyword": "ok",  # the type's own rule: HEAD has no body
            "options-http-expected_status": "999",
        },
    )
    response = superuser_client.post(reverse(ADD), data)
    form = form_of(response)
    assert form.errors["options-http-expected_status"] == [
        "Ensure this value is less than or equal to 599."
    ]
    assert form.errors["options-http-keyword"] == [
        "A keyword needs method GET: HEAD responses have no body."
    ]
    assert not PeriodicScan.objects.exists()
    # The page keeps what was typed.
    page = page_of(response)
    assert 'name="options-http-expected_status" value="999"' in page


def test_switching_the_type_stores_the_new_types_options_and_drops_the_old_ones(
    superuser_client, berlin
):
    scan = make_scan(tenant=berlin, scan_type="test_sleep", target="x", options={"seconds": 3})
    data = add_form(
        berlin,
        name=scan.name,
        scan_type="test_slow_first_attempt",
        **{"options-test_sleep-seconds": "3", "options-test_slow_first_attempt-seconds": "7"},
    )
    response = superuser_client.post(reverse(CHANGE, args=[scan.pk]), data)
    assert response.status_code == 302, form_of(response).errors
    scan.refresh_from_db()
    assert (scan.scan_type, scan.options) == ("test_slow_first_attempt", {"seconds": 7.0})


def test_a_type_switched_to_without_its_required_options_is_refused_keeping_the_input(
    superuser_client, berlin
):
    task = make_task(tenant=berlin, task_type="test_async", options={"seconds": 1})
    data = base_form(
        berlin,
        name=task.name,
        description="kept",
        task_type="test_add",
        **{"options-test_add-b": "4"},  # "a" is required and missing
    )
    url = reverse("admin:scheduling_scheduledtask_change", args=[task.pk])
    response = superuser_client.post(url, data)
    form = form_of(response)
    assert form.errors["options-test_add-a"] == ["This field is required."]
    assert form["options-test_add-b"].value() == "4"
    assert ">\nkept</textarea>" in page_of(response)
    # The chosen type's options are the open ones on the page shown again.
    assert "collapse" not in fieldset_classes(response)["Options of Test: add"]
    task.refresh_from_db()
    assert (task.task_type, task.options, task.description) == ("test_async", {"seconds": 1}, "")


def test_saving_without_touching_the_options_leaves_them_as_stored(superuser_client, berlin):
    # The http type cleans an absent method to GET; re-saving must not rewrite the options.
    scan = make_scan(tenant=berlin, scan_type="http", target="https://example.com/", options={})
    url = reverse(CHANGE, args=[scan.pk])
    initial = form_of(superuser_client.get(url)).initial
    data = add_form(
        berlin,
        name=scan.name,
        scan_type="http",
        target=scan.target,
        description="new text",
        **{
            name: value
            for name, value in initial.items()
            if name.startswith("options-http-") and value is not None
        },
    )
    assert superuser_client.post(url, data).status_code == 302
    scan.refresh_from_db()
    assert scan.options == {} and scan.description == "new text"
    changes = AuditEntry.objects.get(schedule=scan, action="change").changes
    assert "options" not in changes


@pytest.mark.parametrize(
    ("model", "kind_data", "options", "stored"),
    [
        (
            Report,
            {"report_type": "execution_summary", "format": "json", "recipients": ""},
            {"options-execution_summary-period_hours": "48"},
            {"period_hours": 48},
        ),
        (
            CleanupConfig,
            {"cleanup_target": "executions", "retain_days": "7", "batch_size": "100"},
            {"options-executions-use_tenant_retention": "on"},
            {"use_tenant_retention": True},
        ),
        (
            ScheduledTask,
            {"task_type": "test_refresh_feed"},
            {"options-test_refresh_feed-url": "https://example.com/feed"},
            # "limit" was left at the value the page offered, the type's default.
            {"url": "https://example.com/feed", "limit": 10},
        ),
    ],
)
def test_every_kind_takes_its_types_options_as_fields(
    superuser_client, berlin, model, kind_data, options, stored
):
    opts = model._meta
    add = reverse(f"admin:{opts.app_label}_{opts.model_name}_add")
    type_field = next(iter(kind_data))
    page = page_of(superuser_client.get(add))
    assert f'<select name="{type_field}" class="scheduling-type"' in page
    assert 'name="options"' not in page
    initial = form_of(superuser_client.get(add)).initial
    shown = {name: value for name, value in initial.items() if name.startswith("options-")}
    data = base_form(berlin, **kind_data, **{k: v for k, v in shown.items() if v is not None})
    data.update(options)
    response = superuser_client.post(add, data)
    assert response.status_code == 302, form_of(response).errors
    assert model.objects.get(name="nightly").options == stored


def test_a_stored_type_that_is_no_longer_registered_is_shown_and_named_on_save(
    superuser_client, berlin
):
    scan = make_scan(tenant=berlin, scan_type="test_echo", target="x")
    PeriodicScan.objects.filter(pk=scan.pk).update(scan_type="retired")
    url = reverse(CHANGE, args=[scan.pk])
    page = page_of(superuser_client.get(url))
    assert '<option value="retired" selected>retired (not registered)</option>' in page
    response = superuser_client.post(url, add_form(berlin, name=scan.name, scan_type="retired"))
    assert form_of(response).errors["scan_type"][0].startswith("Unknown scan type 'retired'")


def test_viewers_see_the_options_as_text(staff_client, berlin):
    scan = make_scan(
        tenant=berlin, scan_type="test_sleep", target="x", options={"seconds": 2, "fail": True}
    )
    client = staff_client({berlin: "viewer"})
    page = page_of(client.get(reverse(CHANGE, args=[scan.pk])))
    assert "<div>Seconds: 2</div><div>Fail: True</div>" in page
    assert "options-test_sleep-seconds" not in page


# -- item 3: times in the schedule's zone ----------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_start_and_end_are_read_in_the_tenants_zone_and_the_form_says_so(superuser_client, berlin):
    page = page_of(superuser_client.get(reverse(ADD) + f"?tenant={berlin.pk}"))
    assert page.count(">Times are in Europe/Berlin.</span>") == 4  # pause, start, end, run at
    data = add_form(
        berlin,
        timezone="",
        start_at_0="2026-03-10",
        start_at_1="08:00",
        end_at_0="2026-07-01",
        end_at_1="08:00:00",
    )
    response = superuser_client.post(reverse(ADD), data)
    assert response.status_code == 302, form_of(response).errors
    scan = PeriodicScan.objects.get(name="nightly")
    assert scan.timezone == "Europe/Berlin"
    assert scan.start_at == datetime(2026, 3, 10, 7, 0, tzinfo=UTC)  # 08:00 CET
    assert scan.end_at == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)  # 08:00 CEST
    # Shown again as typed, in the schedule's zone.
    page = page_of(superuser_client.get(reverse(CHANGE, args=[scan.pk])))
    assert 'name="start_at_0" value="2026-03-10"' in page
    assert 'name="start_at_1" value="08:00:00"' in page
    assert 'name="end_at_1" value="08:00:00"' in page


@time_machine.travel(NOW, tick=False)
def test_times_follow_the_zone_chosen_in_the_form(superuser_client, berlin):
    data = add_form(berlin, timezone="Asia/Tokyo", start_at_0="2026-03-10", start_at_1="08:00")
    assert superuser_client.post(reverse(ADD), data).status_code == 302
    scan = PeriodicScan.objects.get(name="nightly")
    assert scan.start_at == datetime(2026, 3, 9, 23, 0, tzinfo=UTC)
    page = page_of(superuser_client.get(reverse(CHANGE, args=[scan.pk])))
    assert ">Times are in Asia/Tokyo.</span>" in page


@time_machine.travel(NOW, tick=False)
def test_a_time_that_daylight_saving_skips_is_refused(superuser_client, berlin):
    data = add_form(berlin, start_at_0="2026-03-29", start_at_1="02:30")
    response = superuser_client.post(reverse(ADD), data)
    assert form_of(response).errors["start_at"] == [
        "2026-03-29 02:30:00 does not exist in Europe/Berlin, or happens twice there (a "
        "daylight saving time change): choose another time."
    ]


@time_machine.travel(NOW, tick=False)
def test_the_preview_reads_times_in_the_schedules_zone(superuser_client, berlin):
    url = reverse("admin:scheduling_periodicscan_preview")
    data = add_form(berlin, trigger_type="once", run_at_0="2026-03-10", run_at_1="08:00")
    data["timezone"] = ""
    runs = superuser_client.post(url, data).json()["runs"]
    assert [run["local"] for run in runs] == ["Tue 2026-03-10 08:00:00 CET"]


def test_the_time_zone_is_a_choice_of_iana_names_in_any_case(superuser_client, berlin):
    response = superuser_client.get(reverse(ADD))
    choices = dict(form_of(response).fields["timezone"].choices)
    assert choices[""] == "The tenant's time zone (UTC without a tenant)"
    assert choices["America/New_York"] == "America/New York"
    assert 'class="scheduling-timezone"' in page_of(response)
    data = add_form(berlin, timezone="america/new_york")
    assert superuser_client.post(reverse(ADD), data).status_code == 302
    assert PeriodicScan.objects.get(name="nightly").timezone == "America/New_York"
    response = superuser_client.post(reverse(ADD), add_form(berlin, name="x", timezone="Mars/Base"))
    assert form_of(response).errors["timezone"] == [
        "Select a valid choice. Mars/Base is not one of the available choices."
    ]


def test_read_only_times_show_the_schedules_zone_with_seconds(superuser_client, berlin):
    scan = make_scan(tenant=berlin, scan_type="test_echo", target="x", timezone="Europe/Berlin")
    PeriodicScan.objects.filter(pk=scan.pk).update(
        last_run_at=datetime(2026, 3, 2, 9, 30, 5, tzinfo=UTC),
        created_at=datetime(2026, 1, 5, 12, 0, tzinfo=UTC),
    )
    page = page_of(superuser_client.get(reverse(CHANGE, args=[scan.pk])))
    assert "2026-03-02 10:30:05 CET" in page  # last run
    assert "2026-01-05 13:00:00 CET" in page  # created
    listing = page_of(superuser_client.get(reverse("admin:scheduling_periodicscan_changelist")))
    assert '<td class="field-last_run_at_time">2026-03-02 10:30:05 CET</td>' in listing


def test_a_viewer_sees_start_end_and_pause_in_the_schedules_zone(staff_client, berlin):
    scan = make_scan(
        tenant=berlin,
        scan_type="test_echo",
        target="x",
        start_at=datetime(2026, 3, 10, 7, 0, tzinfo=UTC),
        paused_until=datetime(2030, 7, 1, 6, 0, tzinfo=UTC),
    )
    page = page_of(staff_client({berlin: "viewer"}).get(reverse(CHANGE, args=[scan.pk])))
    assert "2026-03-10 08:00:00 CET" in page
    assert "2030-07-01 08:00:00 CEST" in page


# -- item 7: every error of a save at once ---------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_one_save_reports_every_wrong_field(superuser_client, berlin):
    make_scan(tenant=berlin, name="nightly")
    data = add_form(
        berlin,
        scan_type="test_sleep",
        cron_expression="61 * * * *",
        timezone="Mars/Base",
        timeout_seconds="0",
        end_at_0="2026-03-01",
        end_at_1="08:00",
        description="d" * 2001,
        **{"options-test_sleep-seconds": "long"},
    )
    response = superuser_client.post(reverse(ADD), data)
    errors = form_of(response).errors
    assert set(errors) >= {
        "name",
        "cron_expression",
        "timezone",
        "timeout_seconds",
        "end_at",
        "description",
        "options-test_sleep-seconds",
    }, errors
    assert errors["name"] == ["A periodic scan named nightly already exists for this tenant."]
    assert errors["cron_expression"][0].startswith("Invalid cron expression: minute field")
    assert errors["end_at"][0].startswith("This end has already passed")
    assert errors["options-test_sleep-seconds"] == ["Enter a number."]
    # Each field once: no error repeated by a later rule.
    assert all(len(messages) == 1 for messages in errors.values()), errors
    assert PeriodicScan.objects.count() == 1


@time_machine.travel(NOW, tick=False)
def test_an_unknown_type_is_reported_with_the_other_errors(superuser_client, berlin):
    data = add_form(
        berlin, scan_type="nmap", cron_expression="* * *", interval_seconds="", timezone="x"
    )
    errors = form_of(superuser_client.post(reverse(ADD), data)).errors
    assert errors["scan_type"] == [
        "Select a valid choice. nmap is not one of the available choices."
    ]
    assert set(errors) >= {"scan_type", "cron_expression", "timezone"}


@time_machine.travel(NOW, tick=False)
def test_an_end_that_passed_since_does_not_block_other_edits(superuser_client, berlin):
    scan = make_scan(
        tenant=berlin, scan_type="test_echo", target="x", end_at=NOW - timedelta(days=1)
    )
    local_end = (NOW - timedelta(days=1)).astimezone(zoneinfo.ZoneInfo("Europe/Berlin"))
    data = add_form(
        berlin,
        name=scan.name,
        description="still editable",
        end_at_0=f"{local_end:%Y-%m-%d}",
        end_at_1=f"{local_end:%H:%M:%S}",
    )
    response = superuser_client.post(reverse(CHANGE, args=[scan.pk]), data)
    assert response.status_code == 302, form_of(response).errors
    scan.refresh_from_db()
    assert scan.description == "still editable"


# -- item 9: help texts with the values in force ---------------------------------------------


def test_help_texts_give_the_values_of_the_settings(superuser_client):
    fields = form_of(superuser_client.get(reverse(ADD))).fields
    assert fields["timeout_seconds"].help_text.endswith(
        "Empty: the default, 1 hour (SCHEDULING_DEFAULT_TIMEOUT)."
    )
    assert fields["misfire_grace_seconds"].help_text.endswith(
        "Empty: the default, 1 minute (SCHEDULING_DEFAULT_MISFIRE_GRACE)."
    )
    with override_settings(SCHEDULING_DEFAULT_TIMEOUT=600, SCHEDULING_MIN_INTERVAL=90):
        fields = form_of(superuser_client.get(reverse(ADD))).fields
    assert fields["timeout_seconds"].help_text.endswith(
        "Empty: the default, 10 minutes (SCHEDULING_DEFAULT_TIMEOUT)."
    )
    assert "at least 1 minute 30 seconds (SCHEDULING_MIN_INTERVAL)" in (
        fields["interval_seconds"].help_text
    )


def test_a_types_options_help_gives_the_values_of_the_settings(superuser_client):
    # The scan types' timeout option, rendered as a field of its own.
    with override_settings(SCHEDULING_SCAN_TIMEOUT=30.0):
        page = page_of(superuser_client.get(reverse(ADD)))
    assert "Empty: 30 seconds (SCHEDULING_SCAN_TIMEOUT)." in page
    assert "Empty: 10 seconds (SCHEDULING_SCAN_TIMEOUT)." in page_of(
        superuser_client.get(reverse(ADD))
    )


def test_dst_policies_priority_and_dependencies_are_explained(superuser_client):
    fields = form_of(superuser_client.get(reverse(ADD))).fields
    assert "spring forward" in fields["dst_gap_policy"].help_text
    assert "fall back" in fields["dst_fold_policy"].help_text
    assert "tenants still take turns" in fields["priority"].help_text
    assert "no timer of its own" in fields["depends_on"].help_text


# -- the pause page (items 3 and 10) ---------------------------------------------------------


def pause_page(client, schedules):
    data = {"action": "pause", "_selected_action": [s.pk for s in schedules]}
    return page_of(client.post(reverse("admin:scheduling_periodicscan_changelist"), data))


def test_the_pause_page_has_the_date_widgets_styles_and_names_the_zone(superuser_client, berlin):
    page = pause_page(superuser_client, [make_scan(tenant=berlin)])
    assert re.search(r'<link rel="stylesheet" href="[^"]*admin/css/forms\.css">', page)
    assert ">Times are in Europe/Berlin.</span>" in page


def test_schedules_in_several_zones_are_paused_until_a_time_in_utc(superuser_client, berlin):
    other = make_tenant(name="New York", timezone="America/New_York")
    page = pause_page(superuser_client, [make_scan(tenant=berlin), make_scan(tenant=other)])
    assert ">Times are in UTC.</span>" in page
    assert (
        "These schedules are in different time zones (America/New_York, Europe/Berlin): the "
        "time is read in UTC."
    ) in page


def test_a_tenant_admin_gets_the_same_form(client, berlin):
    # Not only superusers: the choices and fields come from the registry, not from rights.
    user = make_user(is_staff=True)
    make_membership(user=user, tenant=berlin, role="admin")
    client.force_login(user)
    form = form_of(client.get(reverse("admin:scheduling_scheduledtask_add")))
    assert [key for key, _label in form.fields["task_type"].choices[1:]] == task_types.keys()
    assert "options-test_add-a" in form.fields
