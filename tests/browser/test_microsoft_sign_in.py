"""Issue 10: an administrator adds a Graph credential in the browser and signs in with Microsoft (the sandbox's
login endpoint) under the strict CSP; a refresh token given on the command line is not "nobody signed in"."""

from __future__ import annotations

import io
import json

from django.core.management import call_command
from playwright.sync_api import expect

from convadmin.audit.models import AuditEvent, EventType
from convadmin.credentials.models import Credential
from tests.browser.conftest import log_in, screenshot
from tests.factories import UserFactory

PASSWORD = "correct horse battery"  # UserFactory's


def test_admin_adds_a_graph_credential_and_signs_in_with_microsoft(page, sandbox):
    UserFactory(username="ann-admin", role="Administrator")
    graph = sandbox.credentials()["msgraph"]

    log_in(page, "ann-admin", PASSWORD)
    page.goto("/credentials/new/")
    page.get_by_label("Provider").select_option("Microsoft Graph")
    expect(page.get_by_role("group", name="Microsoft Graph")).to_be_visible()
    # An empty submit flags the label and every required provider field in one round.
    page.get_by_role("button", name="Add credential").click()
    for label in ("Label", "Directory (tenant) ID", "Application (client) ID", "Client secret", "Group ID"):
        expect(page.get_by_label(label)).to_have_attribute("aria-invalid", "true")
    screenshot(page, "credential-add-all-errors")

    page.get_by_label("Label").fill("Graph QA")
    page.get_by_label("Directory (tenant) ID").fill(graph["tenant_id"])
    page.get_by_label("Application (client) ID").fill(graph["client_id"])
    page.get_by_label("Client secret").fill(graph["client_secret"])
    page.get_by_label("Group ID").fill(graph["group_id"])
    page.get_by_label("Base URL").fill(graph["base_url"])
    page.get_by_label("Sign-in URL").fill(graph["login_url"])
    page.get_by_role("button", name="Add credential").click()
    expect(page.get_by_role("heading", name="Graph QA")).to_be_visible()
    expect(page.get_by_text("Nobody has signed in yet.")).to_be_visible()

    # The sign-in leaves for the login host (the sandbox) and comes back to the credential page.
    page.get_by_role("link", name="Sign in with Microsoft").click()
    expect(page.get_by_text("Signed in with Microsoft as QA User (qa@sandbox.test)")).to_be_visible()
    expect(page.get_by_text("Signed in as QA User (qa@sandbox.test)")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in again with Microsoft")).to_be_visible()
    screenshot(page, "microsoft-signed-in")

    credential = Credential.objects.get(label="Graph QA")
    assert credential.get_secrets().get("refresh_token")
    assert AuditEvent.objects.filter(
        event_type=EventType.CREDENTIAL_SIGNED_IN, target_id=str(credential.pk)
    ).exists()
    # The signed-in user's token works: Check names the account.
    page.get_by_role("button", name="Check with Microsoft Graph").click()
    expect(page.locator("#check-result")).to_contain_text("Accepted")
    assert page.console_errors == []  # no CSP violation on the way (Chromium reports them here)


def test_a_refresh_token_from_the_command_line_is_not_called_nobody_signed_in(page, sandbox, tmp_path):
    UserFactory(username="ann-admin", role="Administrator")
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(sandbox.credentials()["msgraph"]))
    call_command("add_credential", "msgraph", "Graph CLI", file=str(path), stdout=io.StringIO())

    log_in(page, "ann-admin", PASSWORD)
    page.goto(f"/credentials/{Credential.objects.get(label='Graph CLI').pk}/")
    expect(page.get_by_text("A refresh token was given with the credential")).to_be_visible()
    expect(page.get_by_text("Nobody has signed in yet")).to_have_count(0)
    assert page.console_errors == []
