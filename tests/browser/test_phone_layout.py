"""Issue 10 (items 14, 15): every page fits a 390 px phone, the list filters lay out cleanly on a desktop,
long bodies can be scrolled from the keyboard, and a create breaks no CSP rule."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from convadmin.conversations.models import Conversation
from convadmin.credentials.models import Credential
from tests.browser.conftest import DEMO_PASSWORD, log_in, screenshot, start_conversation
from tests.factories import UserFactory

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1360, "height": 900}


def assert_fits(page, name: str) -> None:
    """No horizontal scroll of the page as a whole (a wide table may scroll inside its own box)."""
    page.wait_for_load_state("networkidle")
    screenshot(page, f"phone-{name}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: the page is {width} px wide on a {PHONE['width']} px phone"


def assert_on_screen(locator) -> None:
    expect(locator).to_be_visible()
    box = locator.bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], box


def cell_label(locator) -> str:
    """The column name a stacked cell shows beside its value."""
    return locator.evaluate("td => getComputedStyle(td, '::before').content").strip('"')


def filter_rows(page) -> list[list[str]]:
    """The filter form's fields grouped by the line they sit on, top to bottom."""
    rows: dict[int, list[str]] = {}
    for box in page.locator("form.filters > div").all():
        edge = box.bounding_box()
        top = round(edge["y"] + edge["height"])  # fields align on their bottom edge
        label = box.locator("label").first.inner_text() if box.locator("label").count() else "actions"
        rows.setdefault(top, []).append(label.strip())
    return [rows[top] for top in sorted(rows)]


def test_every_page_fits_a_phone(page, demo):
    page.set_viewport_size(PHONE)
    log_in(page, "demo", DEMO_PASSWORD)

    # Dashboard: charts scale to the screen; its tables stack, each cell labelled; a failure links its name.
    assert_fits(page, "dashboard")
    expect(page.locator("svg.chart").first).to_be_visible()
    first = page.locator("#recent tbody tr").first
    assert cell_label(first.locator("td").nth(3)) == "Status"
    assert_on_screen(first.locator(".status"))
    failure = page.locator("#failures li a").first
    expect(failure).not_to_have_text(re.compile(r"^\d{4}-\d\d-\d\d"))
    expect(page.locator("#failures").get_by_role("link", name="fail-500 rehearsal")).to_be_visible()

    # List: Status is on screen in every stacked row, with its label; filters two to a line.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Conversations").click()
    rows = page.locator("table.conversations tbody tr")
    expect(rows.first).to_be_visible()
    assert_fits(page, "list")
    status = rows.first.locator("td[data-label=Status]")
    assert cell_label(status) == "Status"
    assert_on_screen(status.locator(".status").first)
    lines = filter_rows(page)
    assert lines[0] == ["Search:"] or lines[0] == ["Search"], lines
    assert all(len(line) == 2 for line in lines[1:]), lines

    # HighLevel rows read as their contact, and Mixin chips show the end that tells them apart.
    expect(page.locator("table.conversations").get_by_role("link", name="(no name)")).to_have_count(0)
    squad = rows.filter(has_text="Support squad 4")
    chips = squad.locator(".chip")
    texts = chips.all_inner_texts()
    assert len(set(texts)) == len(texts), texts
    for chip in chips.all():
        assert chip.get_attribute("title").endswith(chip.inner_text().split("…")[-1])

    # Detail (a record of each provider, and a failure), every exchange and body opened: it fits, and each
    # box that scrolls can be reached by keyboard (axe's scrollable-region-focusable).
    records = [
        *(
            Conversation.objects.filter(provider=p, status="created").last()
            for p in ("mixin", "twilio", "highlevel", "msgraph")
        ),
        Conversation.objects.get(name="Returns"),
    ]
    for record in records:
        page.goto(f"/conversations/{record.pk}/")
        for summary in page.locator("details > summary").all():
            summary.click()
        assert_fits(page, f"detail-{record.provider}-{record.status}")
        scrollers = page.locator("pre").evaluate_all(
            """pres => pres.filter(p => getComputedStyle(p).overflow !== 'visible')
                .map(p => [p.getAttribute('tabindex'), p.getAttribute('role'), p.getAttribute('aria-label')])"""
        )
        assert scrollers, "no body was shown"
        for tabindex, role, label in scrollers:
            assert (tabindex, role) == ("0", "region") and label, scrollers

    page.goto("/conversations/new/")
    page.get_by_label("Provider").select_option("mixin")
    expect(page.locator("#conversation-form")).to_be_visible()
    assert_fits(page, "new")

    # Credentials: the wide table scrolls inside its own focusable box.
    page.goto("/credentials/")
    assert_fits(page, "credentials")
    box = page.get_by_role("region", name="Credentials table")
    expect(box).to_have_attribute("tabindex", "0")
    page.goto("/credentials/new/")
    page.get_by_label("Provider").select_option("Mixin Messenger")
    assert_fits(page, "credential-new")
    page.goto(f"/credentials/{Credential.objects.order_by('pk').first().pk}/")
    assert_fits(page, "credential-edit")
    page.goto("/users/")
    assert_fits(page, "users")

    # Audit log: stacked rows; a HighLevel record is named by its contact, not "Conversation 23".
    page.goto("/audit/?target_type=conversation")
    assert_fits(page, "audit")
    event = page.locator("table.events tbody tr").first
    assert cell_label(event.locator("td").nth(1)) == "Event"
    highlevel = Conversation.objects.filter(provider="highlevel").order_by("pk").first()
    page.goto(f"/audit/?target_type=conversation&target_id={highlevel.pk}")
    target = page.locator("table.events td[data-label=Target] a").first
    expect(target).to_have_text(f"Contact {highlevel.participants[0]}")
    assert page.console_errors == []


def test_login_and_first_administrator_fit_a_phone(page, transactional_db):
    page.set_viewport_size(PHONE)
    page.goto("/")
    expect(page.get_by_role("heading", name="Create the first administrator")).to_be_visible()
    assert_fits(page, "setup")
    UserFactory(username="ann-admin", role="Administrator")
    page.goto("/accounts/login/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert_fits(page, "login")


def test_filters_lie_on_one_row_on_a_desktop(page, demo):
    page.set_viewport_size(DESKTOP)
    log_in(page, "demo", DEMO_PASSWORD)
    page.goto("/conversations/")
    screenshot(page, "desktop-list")
    lines = filter_rows(page)
    assert len(lines) == 1, lines
    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
    page.goto("/audit/")
    assert len(filter_rows(page)) == 1, filter_rows(page)
    screenshot(page, "desktop-audit")


def test_an_empty_dashboard_links_to_adding_a_credential(page, transactional_db):
    UserFactory(username="ann-admin", role="Administrator")
    log_in(page, "ann-admin", "correct horse battery")
    page.locator("#recent").get_by_role("link", name="Add a credential").click()
    expect(page.get_by_role("heading", name=re.compile("Add a credential"))).to_be_visible()


def test_a_create_breaks_no_csp_rule_when_inputs_carry_a_style_attribute(page, demo):
    """Browser extensions (and Playwright's caret-hiding screenshot) put style="" on inputs; htmx used to
    copy it onto the swapped-in form, which the CSP (no inline styles) reported twice per create."""
    log_in(page, "demo-support", DEMO_PASSWORD)
    start_conversation(page, "twilio")
    page.get_by_label("Friendly name").fill("Phone check")
    page.locator("#participant-0").get_by_label("Chat identity").fill("qa-phone")
    page.screenshot()  # caret="hide": leaves style="" on every input, as extensions do
    page.get_by_role("button", name="Create conversation").click()
    expect(page.locator("#result-panel")).to_contain_text("Conversation created")
    page.wait_for_load_state("networkidle")
    inline_style = [e for e in page.console_errors if "inline style" in e]
    assert inline_style == []
    assert page.console_errors == []
