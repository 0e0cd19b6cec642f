from __future__ import annotations

import pytest

from providers.base import (
    Credential,
    Field,
    InvalidCredential,
    ProviderError,
    base_url,
    check_base_url,
    error_text,
    host_allowed,
    is_loopback,
    require_fields,
)

FIELDS = [
    Field("account_sid", "Account SID"),
    Field("auth_token", "Auth token", secret=True),
    Field("region", "Region", required=False),
]


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com",
        "https://api.example.com/",
        "https://api.example.com:8443",
        "http://127.0.0.1:8025",
        "http://127.5.6.7",
        "http://localhost:8000",
        "http://LOCALHOST",
        "http://[::1]:8000",
    ],
)
def test_it_accepts_https_and_loopback_http_base_urls(url: str):
    assert check_base_url(url, hosts=("api.example.com",)) == []


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example",
        "https://api.example.com.attacker.example",
        "https://evil-api.example.com",
        "https://8.8.8.8",
    ],
)
def test_it_refuses_a_host_that_is_not_the_providers(url: str):
    [error] = check_base_url(url, hosts=("api.example.com", "*.eu.example.com"))
    assert "is not a host of this provider (api.example.com, *.eu.example.com)" in error.message
    assert "PROVIDER_EXTRA_HOSTS" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254",  # cloud metadata
        "https://[fd00:ec2::254]",  # AWS metadata over IPv6
        "https://10.0.0.5",
        "https://192.168.1.10:8443",
        "https://172.16.0.1",
        "https://100.64.0.1",  # carrier-grade NAT
        "https://0.0.0.0",
        "https://[fe80::1]",
        "https://[::ffff:169.254.169.254]",
    ],
)
def test_it_refuses_private_link_local_and_metadata_addresses(url: str):
    [error] = check_base_url(url, hosts=("api.example.com",))
    assert "private, link-local or metadata address" in error.message


def test_the_operator_may_add_hosts_and_private_addresses_by_name():
    extra = ("proxy.corp.example", "10.0.0.5", "*.mirror.example")
    for url in ("https://proxy.corp.example", "https://10.0.0.5:8443", "https://eu.mirror.example"):
        assert check_base_url(url, hosts=("api.example.com",), extra_hosts=extra) == [], url
    assert check_base_url("https://10.0.0.6", hosts=(), extra_hosts=extra)
    assert check_base_url("https://mirror.example", hosts=(), extra_hosts=extra)
    # listing a host never allows plain http off loopback
    assert check_base_url("http://proxy.corp.example", hosts=(), extra_hosts=extra)


def test_host_patterns_match_whole_labels_only():
    assert host_allowed("a.b.example.com", ["*.example.com"])
    assert not host_allowed("example.com", ["*.example.com"])
    assert not host_allowed("badexample.com", ["*.example.com"])
    assert host_allowed("API.Example.COM", ["api.example.com"])


@pytest.mark.parametrize(
    "url",
    [
        "http://api.example.com",
        "http://0.0.0.0:80",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
    ],
)
def test_it_rejects_plain_http_off_loopback(url: str):
    [error] = check_base_url(url)
    assert error.path == "base_url"
    assert "https://" in error.message


@pytest.mark.parametrize(
    "url",
    [
        "https://api.example.com/v1",
        "https://api.example.com?x=1",
        "https://api.example.com/?x=1",
        "https://api.example.com#top",
        "https://user:pw@api.example.com",
        "https://user@api.example.com",
    ],
)
def test_it_rejects_a_path_query_or_userinfo(url: str):
    [error] = check_base_url(url, "login_url")
    assert error.path == "login_url"
    assert "only the scheme and host" in error.message


@pytest.mark.parametrize("url", ["https://:pw@api.example.com", "https://@api.example.com"])
def test_it_rejects_userinfo_without_a_user_name(url: str):
    assert check_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "api.example.com",
        "//api.example.com",
        "ftp://api.example.com",
        "javascript:alert(1)",
        "https://",
        "https://api.example.com:99999",
        "https://api.example.com:port",
        "http://[::1",
    ],
)
def test_it_rejects_garbage_base_urls(url: str):
    [error] = check_base_url(url)
    assert error.message == "Enter a URL such as https://api.example.com."


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", True), ("[::1]", True), ("Localhost", True), ("10.0.0.1", False), ("example.com", False)],
)
def test_it_recognises_loopback_hosts(host: str, expected: bool):
    assert is_loopback(host) is expected


def test_it_splits_secrets_from_settings_and_ignores_unknown_keys():
    cred = require_fields(
        {"account_sid": " AC123 ", "auth_token": "tok-1234", "extra": "ignored"}, FIELDS, "twilio"
    )
    assert (cred.provider, cred.settings, cred.secrets) == (
        "twilio",
        {"account_sid": "AC123"},
        {"auth_token": "tok-1234"},
    )


def test_it_lists_every_missing_required_field():
    with pytest.raises(InvalidCredential) as info:
        require_fields({"account_sid": "   ", "region": ""}, FIELDS, "twilio")
    assert [(e.path, e.message) for e in info.value.errors] == [
        ("account_sid", "Account SID is required."),
        ("auth_token", "Auth token is required."),
    ]


def test_it_rejects_a_field_that_is_not_text():
    with pytest.raises(InvalidCredential) as info:
        require_fields({"account_sid": 123, "auth_token": ["x"]}, FIELDS, "twilio")
    assert [(e.path, e.message) for e in info.value.errors] == [
        ("account_sid", "Account SID must be text."),
        ("auth_token", "Auth token must be text."),
    ]
    assert "account_sid: Account SID must be text." in str(info.value)


def test_it_keeps_an_optional_field_when_given():
    cred = require_fields({"account_sid": "AC1", "auth_token": "tok-1234", "region": "ie1"}, FIELDS, "twilio")
    assert cred.settings["region"] == "ie1"


URLS = {"base_url": ("api.example.com",), "login_url": ("login.example.com",)}


def test_it_validates_the_base_url_and_strips_its_trailing_slash():
    data = {"account_sid": "AC1", "auth_token": "tok-1234", "base_url": " http://127.0.0.1:8025/ "}
    assert require_fields(data, FIELDS, "twilio", URLS).settings["base_url"] == "http://127.0.0.1:8025"


def test_it_checks_each_url_against_its_own_hosts_and_ignores_urls_the_provider_does_not_take():
    data = {"account_sid": "AC1", "auth_token": "tok-1234", "login_url": "https://api.example.com"}
    with pytest.raises(InvalidCredential) as info:
        require_fields(data, FIELDS, "x", URLS)
    assert [e.path for e in info.value.errors] == ["login_url"]
    assert "login_url" not in require_fields(data, FIELDS, "x", {"base_url": ()}).settings
    extra = require_fields(data, FIELDS, "x", URLS, extra_hosts=["api.example.com"])
    assert extra.settings["login_url"] == "https://api.example.com"


@pytest.mark.parametrize("name", ["base_url", "login_url"])
def test_it_rejects_a_plain_http_url_off_loopback(name: str):
    with pytest.raises(InvalidCredential) as info:
        require_fields(
            {"account_sid": "AC1", "auth_token": "tok-1234", name: "http://example.com"}, FIELDS, "x", URLS
        )
    assert [e.path for e in info.value.errors] == [name]


def test_it_rejects_a_base_url_that_is_not_text():
    with pytest.raises(InvalidCredential) as info:
        require_fields({"account_sid": "AC1", "auth_token": "tok-1234", "base_url": 8025}, FIELDS, "x", URLS)
    assert [e.message for e in info.value.errors] == ["base_url must be text."]


def test_base_url_falls_back_to_the_default():
    assert base_url(Credential("x"), "https://api.example.com/") == "https://api.example.com"
    assert (
        base_url(Credential("x", settings={"base_url": "http://localhost:1/"}), "https://a")
        == "http://localhost:1"
    )


def test_the_credential_repr_hides_secrets():
    cred = Credential("twilio", settings={"account_sid": "AC1"}, secrets={"auth_token": "tok-secret-1"})
    assert "tok-secret-1" not in repr(cred)
    assert "tok-secret-1" not in str(cred)
    assert "AC1" in repr(cred)


def test_secret_values_skips_empty_ones():
    assert Credential("x", secrets={"a": "tok-1", "b": ""}).secret_values() == ["tok-1"]


def test_update_secrets_tells_the_owner_about_a_real_change():
    seen: list[dict[str, str]] = []
    cred = Credential("x", secrets={"token": "old-1", "refresh_token": "r-1"}, on_change=seen.append)
    cred.update_secrets(token="new-1", refresh_token="r-1")
    assert cred.secrets == {"token": "new-1", "refresh_token": "r-1"}
    assert seen == [{"token": "new-1", "refresh_token": "r-1"}]


def test_update_secrets_stays_quiet_without_a_change():
    seen: list[dict[str, str]] = []
    cred = Credential("x", secrets={"token": "same-1"}, on_change=seen.append)
    cred.update_secrets(token="same-1")
    cred.update_secrets(token="")
    assert seen == []
    assert cred.secrets == {"token": "same-1"}


def test_update_secrets_works_without_an_owner():
    cred = Credential("x")
    cred.update_secrets(refresh_token="r-2")
    assert cred.secrets == {"refresh_token": "r-2"}


def test_the_provider_error_shows_its_code():
    assert str(ProviderError("Not found", code=20404, status=404)) == "Not found (code 20404)"
    assert str(ProviderError("Boom")) == "Boom"
    error = ProviderError("x", code=0)
    assert (error.code, error.permanent, error.outcome_unknown, error.existing_id) == ("0", True, False, None)


def test_error_text_joins_lists_and_bounds_length():
    assert error_text(["a", "b"]) == "a; b"
    assert error_text(None) == ""
    assert error_text("x" * 600) == "x" * 499 + "…"
