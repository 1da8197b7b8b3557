"""A host's own role mapping on top of ``OrganizationResolver``: plain members operate."""

from scheduling.integrations.organizations import OrganizationResolver


class OperatingMembers(OrganizationResolver):
    member_role = "operator"
