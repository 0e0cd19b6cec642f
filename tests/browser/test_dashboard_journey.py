"""Issue 14: the dashboard's pictures on `make demo`'s data, on a desktop and on a 390 px phone."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from convadmin.dashboard import rollup
from tests.browser.conftest import DEMO_PASSWORD, log_in, screenshot

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def counted(demo):
    rollup.roll_up_latency(now=timezone.now() + timedelta(minutes=10))  # the job waits for calls to settle
    return demo


@pytest.mark.parametrize("viewport", [None, PHONE], ids=["desktop", "phone"])
def test_dashboard_shows_where_creates_fail_and_links_to_them(page, counted, viewport):
    if viewport:
        page.set_viewport_size(viewport)
    log_in(page, "demo-auditor", DEMO_PASSWORD)
    expect(page.get_by_role("heading", name="Creates per day")).to_be_visible()
    charts = page.locator("svg.chart")
    expect(charts.first).to_be_visible()
    assert charts.count() >= 4  # a chart per provider, today per hour, latency
    assert page.locator("svg.chart[role=img] title").count() >= 4
    page.wait_for_load_state("networkidle")
    screenshot(page, f"dashboard-{'phone' if viewport else 'desktop'}")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], f"the page is {width} px wide"

    # Every chart has its table; the failure rate and the reasons are text.
    details = page.locator("figure.chart-box details").first
    details.locator("summary").click()
    expect(details.locator("table tbody tr").first).to_be_visible()
    expect(page.locator("table.rates").first).to_contain_text("%")
    reason = page.locator("ol.reasons li a").first
    expect(reason).to_be_visible()

    # A reason opens the list filtered to those failures.
    reason.click()
    page.wait_for_url(re.compile(r"/conversations/\?.*status=failed"))
    expect(page.get_by_label("Status")).to_have_value("failed")
    expect(page.locator("table.conversations tbody tr").first).to_be_visible()
    page.go_back()

    # The filter narrows every figure and stays in the URL (shareable).
    page.get_by_label("Provider", exact=True).select_option("twilio")
    page.wait_for_url(re.compile(r"provider=twilio"))
    expect(page.locator("#figures figcaption").first).to_have_text("Twilio Conversations")
    assert page.locator("#figures figure.chart-box figcaption", has_text="Mixin").count() == 0
    page.reload()
    expect(page.get_by_label("Provider", exact=True)).to_have_value("twilio")
    # A bar segment is a link to that day's records with that outcome.
    bar = page.locator("svg.chart a").first
    href = bar.get_attribute("href")
    assert "provider=twilio" in href and "since=" in href and "status=" in href
    assert page.console_errors == []
