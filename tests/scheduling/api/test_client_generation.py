"""A client generated from the API's schema covers every operation, the report download too.

openapi-python-client leaves out a response whose media type it does not know (``*/*`` was
one): the download's method then returned nothing. The client is generated here, imported,
and used against the live server.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scheduling.api.docs import build_schema
from tests.factories import make_membership, make_token, make_user
from tests.scheduling.api.conftest import build_world


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory):
    """Generate the client package of the served schema; put it on ``sys.path``."""
    root = tmp_path_factory.mktemp("client")
    (root / "schema.json").write_text(json.dumps(build_schema(), default=str))
    (root / "config.yaml").write_text("post_hooks: []\nproject_name_override: sched_client\n")
    result = subprocess.run(  # noqa: S603 - the generator of the test dependencies
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(root / "schema.json"),
            "--config",
            str(root / "config.yaml"),
            "--output-path",
            str(root / "sched_client"),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Every response of every operation was understood (it warns about the ones it drops).
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(root))
    yield "sched_client"
    sys.path.remove(str(root))
    for name in [m for m in sys.modules if m == "sched_client" or m.startswith("sched_client.")]:
        del sys.modules[name]


def test_the_generated_client_downloads_a_report(generated_client, live_server, transactional_db):
    import importlib

    client_module = importlib.import_module(f"{generated_client}.client")
    download = importlib.import_module(
        f"{generated_client}.api.report_artifacts.report_artifacts_download_retrieve"
    )
    world = build_world("A")
    user = make_user()
    make_membership(user=user, tenant=world.tenant, role="viewer")
    client = client_module.AuthenticatedClient(
        base_url=live_server.url, token=make_token(user=user), prefix="Token"
    )

    with client:
        file = download.sync(id=world.artifact.pk, client=client)

    assert file.payload.read() == world.artifact.content.encode()
