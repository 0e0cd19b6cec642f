"""Playwright journeys in Debian's chromium (never `playwright install`). Run with `make browser`."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in this thread; Django's ORM calls from the test are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
DEMO_PASSWORD = "a long enough passphrase"
# The sandbox's `slow` trigger holds a create this long; journeys that want a timeout set PROVIDER_TIMEOUT below it.
SLOW_SECONDS = 2.5
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under artifacts/screenshots/ (git-ignored) for people to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # caret="hide" (the default) leaves style="" on every input; htmx copies it in its next swap and the CSP
    # (no inline styles) then reports errors that real users never cause.
    page.screenshot(path=str(path), full_page=True, caret="initial")
    return path


def log_in(page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/conversations/dashboard/")


@pytest.fixture
def sandbox():
    """The four emulated provider APIs on loopback ports; fresh per test, as the database is."""
    from providers.sandbox import Sandbox

    with Sandbox(slow_seconds=SLOW_SECONDS) as sandbox:
        yield sandbox


@pytest.fixture
def demo(sandbox, live_server, tmp_path):
    """`make demo`'s data: users demo / demo-support / demo-auditor (DEMO_PASSWORD), four "Sandbox …"
    credentials pointing at the sandbox, and ~32 sample records made through the real services."""
    from django.core.management import call_command

    path = tmp_path / "sandbox-credentials.json"
    path.write_text(json.dumps(sandbox.credentials()))
    call_command("seed_demo", credentials=str(path), password=DEMO_PASSWORD, stdout=io.StringIO())
    return sandbox


def start_conversation(page, provider: str) -> None:
    """Open "New conversation" from the menu and choose ``provider`` (its only credential is picked for us)."""
    from playwright.sync_api import expect

    page.get_by_role("navigation", name="Main").get_by_role("link", name="New conversation").click()
    page.get_by_label("Provider").select_option(provider)
    expect(page.locator("#conversation-form")).to_be_visible()
    htmx_settled(page)


def htmx_settled(page) -> None:
    """Wait until htmx has no request in flight and has settled what it swapped in: htmx wires the hx-*
    attributes of new content when it settles (20 ms after the swap), so typing into a field before then
    fires no htmx request. A person never types that fast; a test under load can."""
    page.wait_for_function("() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")


def upload(
    page,
    path,
    header: list[str],
    rows: list[dict[str, str]],
    template: str = "",
    credential: str = "Twilio QA",
) -> None:
    """Write ``rows`` as a CSV file at ``path`` and check it with the Twilio ``credential`` (and ``template``)."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    page.get_by_label("Credential").select_option(label=f"{credential} (Twilio Conversations)")
    page.get_by_label("File").set_input_files(str(path))
    if template:
        page.get_by_label("Template (optional)").select_option(label=f"{template} (Twilio Conversations)")
    page.get_by_role("button", name="Check the file").click()
