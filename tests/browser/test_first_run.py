from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import log_in, screenshot

PASSWORD = "a long enough passphrase"


def test_first_administrator_logs_in_and_manages_users(page, transactional_db):
    page.goto("/")
    expect(page.get_by_role("heading", name="Create the first administrator")).to_be_visible()
    screenshot(page, "setup")
    page.get_by_label("Username").fill("root")
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#id_password_again").fill(PASSWORD + "!")  # a typing mistake is caught
    page.get_by_role("button", name="Create administrator").click()
    expect(page.get_by_text("The two passwords differ.")).to_be_visible()
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#id_password_again").fill(PASSWORD)
    page.get_by_role("button", name="Create administrator").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")
    log_in(page, "root", PASSWORD)

    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    page.get_by_label("Username").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.locator("#id_role").select_option("Support")
    page.get_by_role("button", name="Create user").click()
    expect(page.get_by_text("User sam created as Support.")).to_be_visible()

    # Promote sam in place (htmx row swap, no page reload).
    page.get_by_label("Role of sam").select_option("Auditor")
    row = page.locator(
        "tr", has=page.get_by_label("Role of sam")
    )  # not #user-2: ids keep counting across tests
    row.get_by_role("button", name="Save").click()
    expect(row.get_by_text("Saved")).to_be_visible()
    screenshot(page, "users")

    # A user's own address (e.g. the row form's action, opened in a tab) leads to the users page there.
    user_id = row.get_attribute("id").removeprefix("user-")
    page.goto(f"/users/{user_id}/")
    expect(page.get_by_role("heading", name="Users")).to_be_visible()
    assert page.url.endswith(f"/users/#user-{user_id}")
    assert page.console_errors == []
