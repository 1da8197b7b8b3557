"""Managing a tenant's members in the admin: one page to add a member with a role; owners and
admins manage their own tenant's members, never above their own role; everyone sees theirs."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from tenants import members
from tenants.models import Membership
from tests.factories import make_membership, make_tenant, make_user

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:tenants_membership_add")
LIST_URL = reverse("admin:tenants_membership_changelist")


def change_url(membership):
    return reverse("admin:tenants_membership_change", args=[membership.pk])


def add_form(tenant, member, role="viewer", **overrides):
    data = {
        "tenant": tenant.pk,
        "member": member,
        "role": role,
        "email": "",
        "password1": "",
        "password2": "",
    }
    data.update(overrides)
    return data


@pytest.fixture
def acme(db):
    return make_tenant(name="Acme", slug="acme", timezone="Europe/Berlin")


@pytest.fixture
def globex(db):
    return make_tenant(name="Globex", slug="globex", timezone="America/New_York")


@pytest.fixture
def login(client):
    """Log in a new staff member holding ``{tenant: role}``; return the client."""

    def log_in(roles):
        user = make_user(is_staff=True)
        for tenant, role in roles.items():
            make_membership(user=user, tenant=tenant, role=role)
        client.force_login(user)
        client.user = user
        return client

    return log_in


# -- adding a member on one page ------------------------------------------------------------------


def test_an_owner_adds_an_existing_user_as_viewer_and_they_can_log_in(login, acme):
    client = login({acme: "owner"})
    bob = make_user(username="bob", is_staff=False)
    page = client.get(ADD_URL)
    assert page.status_code == 200
    form = page.context["adminform"].form
    # The only tenant the owner manages is chosen already; viewer is the default role.
    assert form.initial["tenant"] == str(acme.pk)
    assert form.fields["role"].initial == "viewer"
    assert "Add member" in page.content.decode()
    assert "Add member</a>" in client.get(LIST_URL).content.decode()

    response = client.post(ADD_URL, add_form(acme, "bob"))

    assert response.status_code == 302, response.context["adminform"].form.errors
    membership = Membership.objects.get(user=bob)
    assert (membership.tenant, membership.role) == (acme, "viewer")
    bob.refresh_from_db()
    assert bob.is_staff  # so that the role lets them log in to the admin
    client.force_login(bob)
    assert client.get(reverse("admin:tenants_tenant_change", args=[acme.pk])).status_code == 200


def test_a_member_is_found_by_e_mail_address_whatever_its_case(login, acme):
    client = login({acme: "admin"})
    carol = make_user(username="carol", email="Carol@Example.com")
    response = client.post(ADD_URL, add_form(acme, "carol@example.COM", role="operator"))
    assert response.status_code == 302
    assert Membership.objects.get(user=carol).role == "operator"


def test_an_unknown_user_is_an_error_that_says_how_to_create_one(login, acme):
    client = login({acme: "owner"})
    response = client.post(ADD_URL, add_form(acme, "bbo"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["member"]
    assert errors == [
        "No user has the username or e-mail address “bbo”. Check the spelling, or tick "
        "“Create a new user”."
    ]
    assert not get_user_model().objects.filter(username="bbo").exists()


def test_a_shared_e_mail_address_asks_for_the_username(login, acme):
    client = login({acme: "owner"})
    make_user(username="a1", email="team@example.com")
    make_user(username="a2", email="team@example.com")
    response = client.post(ADD_URL, add_form(acme, "team@example.com"))
    assert response.context["adminform"].form.errors["member"] == [
        "Several users have the e-mail address team@example.com: enter the username instead."
    ]


def test_adding_someone_who_is_a_member_already_names_their_role(login, acme):
    client = login({acme: "owner"})
    dave = make_user(username="dave")
    make_membership(user=dave, tenant=acme, role="operator")
    response = client.post(ADD_URL, add_form(acme, "dave", role="admin"))
    assert response.context["adminform"].form.errors["member"] == [
        "dave is a member of Acme already, as Operator."
    ]
    assert Membership.objects.get(user=dave).role == "operator"


def test_a_new_user_without_a_password_gets_a_link_to_set_one(login, client, acme):
    login({acme: "owner"})
    response = client.post(
        ADD_URL,
        add_form(acme, "erin", create_user="on", email="erin@example.com"),
        follow=True,
    )
    assert response.status_code == 200
    erin = get_user_model().objects.get(username="erin")
    assert erin.email == "erin@example.com"
    assert erin.is_staff
    assert not erin.has_usable_password()
    assert Membership.objects.get(user=erin).role == "viewer"
    notes = [str(m) for m in response.context["messages"]]
    link = next(
        re.search(r"https?://\S+", note)[0] for note in notes if "set their password" in note
    )
    assert "(valid for 3 days)" in " ".join(notes)

    # Erin, not logged in, opens the link, sets a password, and logs in with it.
    client.logout()
    form_page = client.get(link, follow=True)
    assert form_page.context["validlink"]
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": "a long new passphrase", "new_password2": "a long new passphrase"},
    )
    assert done.status_code == 302
    assert done.url == reverse("admin:login")
    assert client.login(username="erin", password="a long new passphrase")
    # The link works once.
    client.logout()
    assert not client.get(link, follow=True).context["validlink"]


def test_a_new_user_with_a_password_logs_in_with_it(login, client, acme):
    login({acme: "owner"})
    response = client.post(
        ADD_URL,
        add_form(
            acme,
            "frank",
            role="operator",
            create_user="on",
            password1="correct horse battery",
            password2="correct horse battery",
        ),
        follow=True,
    )
    assert response.status_code == 200
    assert not any("set their password" in str(m) for m in response.context["messages"])
    client.logout()
    assert client.login(username="frank", password="correct horse battery")
    assert Membership.objects.get(user__username="frank").role == "operator"


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"password1": "correct horse battery", "password2": "correct horse batter"},
            "password2",
            "The two password fields didn’t match.",
        ),
        ({"password1": "12345678", "password2": "12345678"}, "password2", "entirely numeric"),
        ({"member": "not a username!"}, "member", "Enter a valid username"),
        ({"member": "taken"}, "member", "A user with the username taken exists already."),
    ],
)
def test_a_new_user_is_checked_like_django_checks_users(
    login, acme, settings, overrides, field, message
):
    settings.AUTH_PASSWORD_VALIDATORS = [
        {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"}
    ]
    make_user(username="taken")
    client = login({acme: "owner"})
    data = add_form(acme, "grace", create_user="on")
    data.update(overrides)
    users = get_user_model().objects.count()
    response = client.post(ADD_URL, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(message in error for error in errors[field]), errors
    assert get_user_model().objects.count() == users
    assert not Membership.objects.filter(tenant=acme, role="viewer").exists()


def test_a_password_for_an_existing_user_is_refused(login, acme):
    client = login({acme: "owner"})
    make_user(username="heidi")
    response = client.post(
        ADD_URL, add_form(acme, "heidi", password1="new pass 123", password2="new pass 123")
    )
    assert response.context["adminform"].form.errors["create_user"] == [
        "The e-mail address and password are for a new user: tick this to create one."
    ]
    assert not Membership.objects.filter(user__username="heidi").exists()


def test_the_tenants_page_links_to_adding_a_member_with_the_tenant_chosen(login, acme):
    client = login({acme: "admin"})
    page = client.get(reverse("admin:tenants_tenant_change", args=[acme.pk]))
    link = f"{ADD_URL}?tenant={acme.pk}"
    assert f'href="{link}"' in page.content.decode()
    assert client.get(link).context["adminform"].form.initial["tenant"] == str(acme.pk)


def test_a_superuser_chooses_among_every_tenant_and_any_role(client, acme, globex):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    form = client.get(ADD_URL).context["adminform"].form
    assert "tenant" not in form.initial  # several tenants: nothing is chosen for them
    assert set(form.fields["tenant"].queryset) == {acme, globex}
    assert [value for value, _label in form.fields["role"].choices] == [
        "owner",
        "admin",
        "operator",
        "viewer",
    ]
    ivan = make_user(username="ivan")
    assert client.post(ADD_URL, add_form(globex, "ivan", role="owner")).status_code == 302
    assert Membership.objects.get(user=ivan).role == "owner"


# -- never above one's own role ------------------------------------------------------------------


def test_an_admin_cannot_make_an_owner(login, acme):
    client = login({acme: "admin"})
    judy = make_user(username="judy")
    form = client.get(ADD_URL).context["adminform"].form
    assert [value for value, _label in form.fields["role"].choices] == [
        "admin",
        "operator",
        "viewer",
    ]
    response = client.post(ADD_URL, add_form(acme, "judy", role="owner"))
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    assert not Membership.objects.filter(user=judy).exists()


def test_an_owner_in_one_tenant_cannot_make_an_owner_where_they_are_admin(login, acme, globex):
    client = login({acme: "owner", globex: "admin"})
    make_user(username="kim")
    response = client.post(ADD_URL, add_form(globex, "kim", role="owner"))
    assert response.context["adminform"].form.errors["role"] == [
        "Your role in Globex does not let you grant the role Owner."
    ]
    assert client.post(ADD_URL, add_form(acme, "kim", role="owner")).status_code == 302


def test_an_admin_changes_and_removes_operators_but_not_owners(login, acme):
    client = login({acme: "admin"})
    owner = make_membership(user=make_user(username="olga"), tenant=acme, role="owner")
    operator = make_membership(user=make_user(username="otto"), tenant=acme, role="operator")

    # Promote the operator to admin, but not to owner.
    refused = client.post(change_url(operator), {"role": "owner"})
    assert refused.status_code == 200
    assert "role" in refused.context["adminform"].form.errors
    assert client.post(change_url(operator), {"role": "admin"}).status_code == 302
    operator.refresh_from_db()
    assert operator.role == "admin"

    # The owner's membership is read-only to them: no demotion, no removal.
    page = client.get(change_url(owner))
    assert page.status_code == 200
    assert "role" not in page.context["adminform"].form.fields
    assert client.post(change_url(owner), {"role": "viewer"}).status_code == 403
    delete_url = reverse("admin:tenants_membership_delete", args=[owner.pk])
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    owner.refresh_from_db()
    assert owner.role == "owner"

    # Nor through "Delete selected" with a member they may remove.
    bulk = {"action": "delete_selected", "_selected_action": [operator.pk, owner.pk]}
    confirmation = client.post(LIST_URL, bulk)
    assert confirmation.status_code == 200
    assert confirmation.context["perms_lacking"] == {"membership"}
    assert client.post(LIST_URL, {**bulk, "post": "yes"}).status_code == 403
    assert Membership.objects.filter(pk__in=[owner.pk, operator.pk]).count() == 2
    bulk["_selected_action"] = [operator.pk]
    assert client.post(LIST_URL, {**bulk, "post": "yes"}).status_code == 302
    assert not Membership.objects.filter(pk=operator.pk).exists()


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_viewers_and_operators_see_their_own_membership_and_manage_none(login, acme, role):
    client = login({acme: role})
    other = make_membership(user=make_user(username="peer"), tenant=acme, role="viewer")
    mine = Membership.objects.get(user=client.user)
    page = client.get(LIST_URL)
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [mine]
    assert client.get(change_url(mine)).status_code == 200
    assert client.post(change_url(mine), {"role": "owner"}).status_code == 403
    assert client.get(change_url(other)).status_code == 404
    assert client.get(ADD_URL).status_code == 403
    assert "Add member</a>" not in page.content.decode()
    make_user(username="quinn")
    assert client.post(ADD_URL, add_form(acme, "quinn")).status_code == 403
    assert not Membership.objects.filter(user__username="quinn").exists()
    mine.refresh_from_db()
    assert mine.role == role


def test_a_tenant_admin_cannot_see_or_touch_another_tenants_members(login, acme, globex):
    client = login({acme: "owner"})
    theirs = make_membership(user=make_user(username="rita"), tenant=globex, role="viewer")
    for url in [
        change_url(theirs),
        reverse("admin:tenants_membership_delete", args=[theirs.pk]),
        reverse("admin:tenants_membership_history", args=[theirs.pk]),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(change_url(theirs), {"role": "owner"}).status_code == 404
    page = client.get(LIST_URL).content.decode()
    assert "rita" not in page
    assert "Globex" not in page
    # Nor add anyone to it, by form or by autocomplete.
    make_user(username="sam")
    response = client.post(ADD_URL, add_form(globex, "sam"))
    assert "tenant" in response.context["adminform"].form.errors
    assert not Membership.objects.filter(user__username="sam").exists()
    results = client.get(
        reverse("admin:autocomplete"),
        {"app_label": "tenants", "model_name": "membership", "field_name": "tenant", "term": ""},
    ).json()["results"]
    assert [item["text"] for item in results] == ["Acme"]
    theirs.refresh_from_db()
    assert theirs.role == "viewer"


def test_an_admin_sees_only_tenants_they_manage_in_the_add_form(login, acme, globex):
    client = login({acme: "admin", globex: "viewer"})
    form = client.get(ADD_URL).context["adminform"].form
    assert list(form.fields["tenant"].queryset) == [acme]
    assert form.initial["tenant"] == str(acme.pk)
    assert client.get(f"{ADD_URL}?tenant=x").status_code == 200


# -- the rules, below the admin -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("as_role", "role", "allowed"),
    [
        ("owner", "owner", True),
        ("owner", "viewer", True),
        ("admin", "owner", False),
        ("admin", "admin", True),
        ("admin", "viewer", True),
        ("operator", "viewer", False),
        ("viewer", "viewer", False),
        (None, "viewer", False),
    ],
)
def test_who_may_manage_which_role(as_role, role, allowed):
    assert members.may_manage(as_role, role) is allowed


def test_the_services_refuse_what_the_role_does_not_allow(acme):
    user = make_user(username="tom")
    with pytest.raises(PermissionDenied):
        members.add_member(tenant=acme, user=user, role="owner", as_role="admin")
    member = members.add_member(tenant=acme, user=user, role="admin", as_role="admin")
    with pytest.raises(ValidationError):
        members.add_member(tenant=acme, user=user, role="viewer", as_role="owner")
    with pytest.raises(PermissionDenied):
        members.change_role(member, role="owner", as_role="admin")
    members.change_role(member, role="owner", as_role="owner")
    with pytest.raises(PermissionDenied):
        members.change_role(member, role="viewer", as_role="admin")
    with pytest.raises(PermissionDenied):
        members.remove_member(member, as_role="admin")
    member.refresh_from_db()
    assert member.role == "owner"


# -- who sees their role where -------------------------------------------------------------------


def test_every_admin_page_tells_the_user_their_roles(login, acme, globex):
    client = login({acme: "operator", globex: "viewer"})
    page = client.get(reverse("admin:index")).content.decode()
    assert re.search(r"Your roles:\s*.*Acme: Operator.*, .*Globex: Viewer", page)
    tenants_page = client.get(reverse("admin:tenants_tenant_changelist")).content.decode()
    assert "Acme: Operator" in tenants_page


def test_a_user_without_memberships_is_told_no_roles(client, acme):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:index")).content.decode()
    assert "Welcome," in page
    assert "Your roles:" not in page


def test_many_roles_end_in_a_link_to_all_of_them(login):
    client = login({make_tenant(name=f"T{n}"): "viewer" for n in range(5)})
    page = client.get(reverse("admin:index")).content.decode()
    assert "T0: Viewer" in page
    assert "T3: Viewer" not in page
    assert f'href="{LIST_URL}?member=me">and 2 more</a>' in page
    mine = client.get(f"{LIST_URL}?member=me").context["cl"].result_list
    assert len(mine) == 5


def test_the_tenant_page_lists_its_members_read_only_to_its_admins(login, acme):
    client = login({acme: "admin"})
    make_membership(user=make_user(username="uma"), tenant=acme, role="operator")
    page = client.get(reverse("admin:tenants_tenant_change", args=[acme.pk]))
    (inline,) = page.context["inline_admin_formsets"]
    assert not inline.has_add_permission
    assert not inline.has_change_permission
    content = page.content.decode()
    assert "uma" in content
    assert "Operator" in content


def test_members_a_superuser_adds_on_the_tenants_page_can_log_in(client, acme):
    client.force_login(make_user(is_staff=True, is_superuser=True))
    vera = make_user(username="vera", is_staff=False)
    data = {
        "name": "Acme",
        "slug": "acme",
        "timezone": "Europe/Berlin",
        "is_active": "on",
        "scan_allow_networks": "",
        "memberships-TOTAL_FORMS": "1",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-user": vera.pk,
        "memberships-0-role": "operator",
    }
    response = client.post(reverse("admin:tenants_tenant_change", args=[acme.pk]), data)
    assert response.status_code == 302, response.context["errors"]
    vera.refresh_from_db()
    assert vera.is_staff
    assert Membership.objects.get(user=vera).role == "operator"


def test_the_membership_list_takes_the_same_queries_for_many_rows(
    login, acme, django_assert_max_num_queries
):
    client = login({acme: "owner"})

    def add(n):
        for _ in range(n):
            make_membership(user=make_user(), tenant=acme, role="viewer")

    add(5)
    with django_assert_max_num_queries(100) as few:
        assert client.get(LIST_URL).status_code == 200
    add(40)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(LIST_URL)
    assert len(page.context["cl"].result_list) == 46
