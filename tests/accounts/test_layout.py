from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db


def test_pages_carry_a_strict_content_security_policy(client):
    response = client.get("/setup/")
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert re.search(r"script-src 'self' 'nonce-[\w+/=-]+'", csp)
    assert "style-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


def test_htmx_is_served_by_us_with_the_page_nonce(admin_client):
    response = admin_client.get("/users/")
    html = response.content.decode()
    nonce = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"]).group(1)
    assert re.search(
        rf'<script src="/static/django_htmx/htmx-2[^"]*\.js" defer nonce="{re.escape(nonce)}"', html
    )
    assert "unpkg" not in html and "cdn" not in html.lower()
    assert '"includeIndicatorStyles": false' in html


def test_every_page_sends_the_csrf_token_with_htmx_requests(admin_client):
    html = admin_client.get("/users/").content.decode()
    assert re.search(
        r"<body hx-headers='\{&quot;X-CSRFToken&quot;: &quot;[\w-]+&quot;\}'|<body hx-headers='\{\"X-CSRFToken\": \"[\w-]+\"\}'",
        html,
    )


def test_navigation_follows_the_role(support_client, auditor_client, admin_client):
    support_nav = support_client.get("/conversations/dashboard/").content
    assert b">Users<" not in support_nav and b">Audit log<" not in support_nav
    assert b">Audit log<" in auditor_client.get("/conversations/dashboard/").content
    admin_nav = admin_client.get("/conversations/dashboard/").content
    assert b">Users<" in admin_nav and b">Credentials<" in admin_nav


def test_a_page_refused_by_role_says_so(outsider_client):
    response = outsider_client.get("/conversations/dashboard/")
    assert response.status_code == 403
    assert b"Your role does not allow this page." in response.content
