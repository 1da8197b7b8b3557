"""The host's task types: what a handler sees of the multitenant ``Project`` model."""

from django_multitenant.utils import get_current_tenant

from scheduling.registry import task_type

from .models import Project


@task_type("list_projects", label="List projects")
def list_projects(task, context) -> dict:
    current = get_current_tenant()
    return {
        "current": current.slug if current is not None else None,
        "projects": sorted(Project.objects.values_list("name", flat=True)),
    }


@task_type("count_projects_then_fail", label="Count projects, then fail")
def count_projects_then_fail(task, context) -> dict:
    raise RuntimeError(f"failed with {Project.objects.count()} projects in sight")


@task_type("list_projects_async", label="List projects (async)")
async def list_projects_async(task, context) -> dict:
    # The async ORM runs its queries in the worker's thread, where the tenant is current.
    names = [name async for name in Project.objects.values_list("name", flat=True)]
    return {"projects": sorted(names)}
