from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from urllib.parse import quote, quote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from providers import mixin
from providers.base import InvalidCredential, ProviderError
from providers.http import Http

# The official Node SDK's public test keystore and its published test vectors.
APP_ID = "13c79909-fd32-401b-bfe5-ecf53816ddbf"
SESSION_ID = "26f481d3-9fd5-47ae-acf3-dff8c94f9e87"
SEED_HEX = "8608c3972c7b61a0e9edb1c8bc051bd5d2c62818c9e338bceb7413306611c722"
SERVER_PUBLIC_KEY = "63e2f06c98ca6b74fe369df18fb673c19d95821e080891666c7f46266a06e2eb"
PUBLIC_KEY_HEX = "7c3572dca37906ab5278907ed8a00430957866a26d89a8e08340083229fab025"
PUBLIC_KEY_B64URL = "fDVy3KN5BqtSeJB-2KAEMJV4ZqJtiajgg0AIMin6sCU"
LEGACY_PRIVATE_KEY = "hgjDlyx7YaDp7bHIvAUb1dLGKBjJ4zi863QTMGYRxyJ8NXLco3kGq1J4kH7YoAQwlXhmom2JqOCDQAgyKfqwJQ"
LEGACY_PIN_TOKEN = "MaszezJeK0GzWLaxy7L_lzOwN7xUpi7jwQghlpB2Gns"
USER = "d1e9ec7e-199d-4578-91a0-a69d9a7ba048"
OTHER = "965e5c6e-434c-3fa9-b780-c50f43cd955c"
CONTACT_ID = "60478c27-1052-3df5-b938-b96a8b907e76"
BODY_B = (
    b'{"category":"CONTACT","conversation_id":"60478c27-1052-3df5-b938-b96a8b907e76",'
    b'"participants":[{"user_id":"d1e9ec7e-199d-4578-91a0-a69d9a7ba048"}]}'
)
ME_JWT = (
    "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJ1aWQiOiIxM2M3OTkwOS1mZDMyLTQwMWItYmZlNS1lY2Y1MzgxNmRkYmYiLCJzaWQi"
    "OiIyNmY0ODFkMy05ZmQ1LTQ3YWUtYWNmMy1kZmY4Yzk0ZjllODciLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwianRp"
    "IjoiMDAwMDAwMDAtMDAwMC00MDAwLTgwMDAtMDAwMDAwMDAwMDAxIiwic2lnIjoiNWU2YjU4ZmZhMTBiM2JjNTE3MjRmZjBiYmQyYWZi"
    "OTFjNDc3MWVlMzQwZjVkNjg1MzQwZGZhNGM4NTRiYWZiYSIsInNjcCI6IkZVTEwifQ.9xWFESd2iTTwVkXqO53YZ8l2e1Eqy5HmyRCZ5"
    "-u2P68NZ1KiDkzt7_WoorvGQY-ssXiZlg57Z25q0cajkbf2Dw"
)
PUBLIC_KEY = Ed25519PublicKey.from_public_bytes(bytes.fromhex(PUBLIC_KEY_HEX))
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
).decode()
CONVERSATION = {
    "type": "conversation",
    "conversation_id": CONTACT_ID,
    "creator_id": APP_ID,
    "category": "CONTACT",
    "participants": [
        {"type": "participant", "user_id": APP_ID, "role": "OWNER"},
        {"type": "participant", "user_id": USER, "role": ""},
    ],
}


def keystore(**changes: object) -> dict:
    data = {
        "app_id": APP_ID,
        "session_id": SESSION_ID,
        "server_public_key": SERVER_PUBLIC_KEY,
        "session_private_key": SEED_HEX,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def legacy_keystore(**changes: object) -> dict:
    data = {
        "pin": "123456",
        "client_id": APP_ID,
        "session_id": SESSION_ID,
        "pin_token": LEGACY_PIN_TOKEN,
        "private_key": LEGACY_PRIVATE_KEY,
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def cred():
    return mixin.parse_credential(keystore())


def serve(*replies: tuple[int, object]):
    """A mock transport answering with ``replies`` in turn (the last one repeats); records requests."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status, payload = replies[min(len(seen), len(replies)) - 1]
        if isinstance(payload, bytes):
            return httpx.Response(status, content=payload)
        return httpx.Response(status, json=payload)

    return handler, seen


def make_http(credential, handler) -> Http:
    return Http(credential.secret_values(), transport=httpx.MockTransport(handler))


def token_of(request: httpx.Request) -> str:
    return request.headers["authorization"].removeprefix("Bearer ")


def claims_of(request: httpx.Request, key=PUBLIC_KEY, algorithm: str = "EdDSA") -> dict:
    return jwt.decode(token_of(request), key, algorithms=[algorithm])


def fields(errors) -> dict[str, str]:
    return {e.path: e.message for e in errors}


def contact(**changes: object) -> dict:
    body = {"category": "CONTACT", "participants": [{"user_id": USER}]}
    body.update(changes)
    return body


def group(**changes: object) -> dict:
    body = {"category": "GROUP", "name": "Support", "participants": [{"user_id": USER}, {"user_id": OTHER}]}
    body.update(changes)
    return body


# --- test vectors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (OTHER, USER, CONTACT_ID),
        (USER, OTHER, CONTACT_ID),
        (OTHER.upper(), USER, "aa0c0b88-44c0-3f8f-8b29-fc5a5c6bbfc8"),
        (OTHER.upper(), USER.upper(), "e3cb6d53-87b2-328b-b21f-3ab709bcc242"),
        (APP_ID, SESSION_ID, "2f9f7fbb-dbc8-33d2-9624-789b8fc54bbb"),
        (OTHER, OTHER, "2f6dc0c5-70a6-3773-ba0a-cb7a7609a153"),
        (
            "00000000-0000-0000-0000-000000000000",
            "ffffffff-ffff-ffff-ffff-ffffffffffff",
            "e88318ad-e987-312c-b355-8de4b31000da",
        ),
    ],
)
def test_unique_conversation_id_reproduces_the_sdk_vectors(a, b, expected):
    assert mixin.unique_conversation_id(a, b) == expected


def test_unique_conversation_id_stamps_the_raw_md5_as_a_version_3_uuid():
    raw = hashlib.md5((OTHER + USER).encode()).hexdigest()
    assert raw == "60478c2710525df53938b96a8b907e76"
    assert mixin.unique_conversation_id(OTHER, USER).replace("-", "") != raw
    assert mixin.unique_conversation_id(OTHER, USER) == str(uuid.UUID(bytes=bytes.fromhex(raw), version=3))


def test_group_conversation_id_reproduces_the_go_sdk_vector():
    participants = [
        "f937ca18-d1ff-46f5-99e8-e23fbd6fd5f2",
        "0e0a20c8-31b8-4093-81b8-9cebd9bc8afc",
        "8391e472-cdbe-4704-be1f-7d184635b885",
        "831fdb67-13ed-4dc5-ac64-dda89aeda2bb",
        "f7ff9dde-18c2-4375-8097-b364068b120e",
        "088c1e3e-1f07-4065-85b5-6b49b4370d32",
    ]
    result = mixin.group_conversation_id(
        "c8cb0ac7-d456-4341-be66-0b143aa09922",
        "Mixin Rocks",
        participants,
        "01d21e2c-76f5-4940-8ea0-9b7f21728674",
    )
    assert result == "5dac944e-2037-31b4-bbd9-e5fd3ffe571e"


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("GET", "/me", b"", "5e6b58ffa10b3bc51724ff0bbd2afb91c4771ee340f5d685340dfa4c854bafba"),
        ("GET", "/safe/me", b"", "31dcc2c21c4a121db640f2b145fe680c74a68cf18b38ce4835c0151229daedf6"),
        (
            "GET",
            f"/conversations/{CONTACT_ID}",
            b"",
            "2fd37dca5b35d47f19b95d370900687133757b3491121db26ccd3eb75120a6be",
        ),
        (
            "POST",
            "/conversations",
            BODY_B,
            "6bd1b8a249ce4df7fd60a47e75e1967e30090b7229f2fcba4a36c0427f52f7ca",
        ),
        (
            "post",
            "/conversations",
            BODY_B,
            "6bd1b8a249ce4df7fd60a47e75e1967e30090b7229f2fcba4a36c0427f52f7ca",
        ),
    ],
)
def test_signature_reproduces_the_vectors(method, path, body, expected):
    assert mixin.signature(method, path, body) == expected


def test_the_vector_public_key_is_derived_from_the_session_private_key():
    public = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(SEED_HEX)).public_key().public_bytes_raw()
    assert public.hex() == PUBLIC_KEY_HEX
    assert base64.urlsafe_b64encode(public).rstrip(b"=").decode() == PUBLIC_KEY_B64URL
    legacy = base64.urlsafe_b64encode(bytes.fromhex(SEED_HEX) + public).rstrip(b"=").decode()
    assert legacy == LEGACY_PRIVATE_KEY


def test_the_legacy_pin_token_vector_is_the_server_key_in_x25519_form():
    p = 2**255 - 19
    y = int.from_bytes(bytes.fromhex(SERVER_PUBLIC_KEY), "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, -1, p) % p
    assert base64.urlsafe_b64encode(u.to_bytes(32, "little")).rstrip(b"=").decode() == LEGACY_PIN_TOKEN


@pytest.mark.parametrize("data", [keystore(), legacy_keystore()], ids=["current", "legacy"])
def test_sign_token_reproduces_the_reference_jwt_byte_for_byte(data):
    credential = mixin.parse_credential(data)
    token = mixin.sign_token(
        credential,
        "GET",
        "/me",
        b"",
        iat=1700000000,
        exp=1700003600,
        jti="00000000-0000-4000-8000-000000000001",
    )
    assert token == ME_JWT
    claims = jwt.decode(token, PUBLIC_KEY, algorithms=["EdDSA"], options={"verify_exp": False})
    assert list(claims) == ["uid", "sid", "iat", "exp", "jti", "sig", "scp"]
    assert claims["sig"] == "5e6b58ffa10b3bc51724ff0bbd2afb91c4771ee340f5d685340dfa4c854bafba"
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "typ": "JWT"}


def test_sign_token_lives_a_few_minutes_with_a_fresh_jti(cred):
    first = jwt.decode(mixin.sign_token(cred, "GET", "/me", b""), PUBLIC_KEY, algorithms=["EdDSA"])
    second = jwt.decode(mixin.sign_token(cred, "GET", "/me", b""), PUBLIC_KEY, algorithms=["EdDSA"])
    assert abs(first["iat"] - time.time()) < 5
    assert first["exp"] - first["iat"] == 300
    assert first["jti"] != second["jti"]
    assert uuid.UUID(first["jti"]).version == 4


# --- credential ---------------------------------------------------------------------------------


def test_it_parses_the_current_keystore():
    credential = mixin.parse_credential(keystore(app_id=APP_ID.upper(), session_private_key=SEED_HEX.upper()))
    assert credential.provider == "mixin"
    assert credential.settings == {
        "app_id": APP_ID,
        "session_id": SESSION_ID,
        "key_algorithm": "EdDSA",
        "server_public_key": SERVER_PUBLIC_KEY,
    }
    assert credential.secrets == {"session_private_key": SEED_HEX}


def test_it_parses_the_legacy_ed25519_keystore_and_maps_client_id_to_app_id():
    credential = mixin.parse_credential(legacy_keystore())
    assert credential.settings == {"app_id": APP_ID, "session_id": SESSION_ID, "key_algorithm": "EdDSA"}
    assert credential.secrets == {
        "private_key": LEGACY_PRIVATE_KEY,
        "pin_token": LEGACY_PIN_TOKEN,
        "pin": "123456",
    }


def test_it_accepts_a_legacy_key_in_standard_base64():
    standard = base64.b64encode(base64.urlsafe_b64decode(LEGACY_PRIVATE_KEY + "==")).decode()
    credential = mixin.parse_credential(legacy_keystore(private_key=standard))
    token = mixin.sign_token(
        credential, "GET", "/me", b"", iat=1700000000, exp=1700003600, jti=str(uuid.UUID(int=1))
    )
    assert jwt.decode(token, PUBLIC_KEY, algorithms=["EdDSA"], options={"verify_exp": False})["uid"] == APP_ID


def test_it_reads_a_legacy_rsa_keystore_as_rs512():
    credential = mixin.parse_credential(legacy_keystore(private_key=RSA_PEM, pin_token="c2VjcmV0"))
    assert credential.settings["key_algorithm"] == "RS512"
    token = mixin.sign_token(credential, "GET", "/me", b"")
    assert jwt.get_unverified_header(token)["alg"] == "RS512"
    claims = jwt.decode(token, RSA_KEY.public_key(), algorithms=["RS512"])
    assert claims["uid"] == APP_ID
    assert claims["sig"] == mixin.signature("GET", "/me", b"")


def test_it_accepts_an_rsa_pem_pasted_with_escaped_newlines():
    credential = mixin.parse_credential(legacy_keystore(private_key=RSA_PEM.replace("\n", "\\n")))
    assert credential.settings["key_algorithm"] == "RS512"


@pytest.mark.parametrize(
    ("data", "path", "words"),
    [
        (keystore(app_id="not-a-uuid"), "app_id", "UUID"),
        (keystore(app_id=None), "app_id", "required"),
        (legacy_keystore(client_id="13c79909"), "client_id", "UUID"),
        (keystore(session_id="26f481d3-9fd5-47ae-acf3"), "session_id", "UUID"),
        (keystore(session_id=None), "session_id", "required"),
        (keystore(session_private_key=SEED_HEX[:62]), "session_private_key", "64 hex"),
        (keystore(session_private_key=SEED_HEX + SEED_HEX), "session_private_key", "64 hex"),
        (keystore(session_private_key="z" * 64), "session_private_key", "hexadecimal"),
        (keystore(session_private_key=None), "session_private_key", "required"),
        (keystore(server_public_key="abc"), "server_public_key", "64 hex"),
        (keystore(server_public_key="g" * 64), "server_public_key", "hexadecimal"),
        (keystore(private_key=LEGACY_PRIVATE_KEY), "private_key", "not both"),
        (legacy_keystore(private_key="not base64!"), "private_key", "Not base64"),
        (legacy_keystore(private_key=LEGACY_PRIVATE_KEY[:43]), "private_key", "64 bytes"),
        (legacy_keystore(private_key=LEGACY_PRIVATE_KEY[:-4] + "AAAA"), "private_key", "damaged"),
        (legacy_keystore(private_key="-----BEGIN RSA PRIVATE KEY-----\nxx\n-----END"), "private_key", "PEM"),
        (legacy_keystore(pin="12ab"), "pin", "6 digits"),
        (legacy_keystore(pin_token="***"), "pin_token", "base64"),
        (legacy_keystore(client_id=APP_ID, app_id=SESSION_ID), "client_id", "differ"),
        (keystore(base_url="http://api.example.com"), "base_url", "https"),
        (keystore(base_url="https://api.example.com/v1"), "base_url", "scheme and host"),
        (keystore(app_id=12), "app_id", "text"),
    ],
)
def test_it_rejects_a_malformed_keystore_field(data, path, words):
    with pytest.raises(InvalidCredential) as caught:
        mixin.parse_credential(data)
    errors = fields(caught.value.errors)
    assert path in errors, errors
    assert words in errors[path]


def test_it_rejects_a_pem_key_that_is_not_rsa():
    pem = (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with pytest.raises(InvalidCredential) as caught:
        mixin.parse_credential(legacy_keystore(private_key=pem))
    assert "RSA" in fields(caught.value.errors)["private_key"]


def test_it_rejects_a_keystore_that_is_not_an_object():
    with pytest.raises(InvalidCredential):
        mixin.parse_credential(["app_id"])  # type: ignore[arg-type]


def test_it_allows_http_for_a_loopback_base_url():
    credential = mixin.parse_credential(keystore(base_url="http://127.0.0.1:8765/"))
    assert credential.settings["base_url"] == "http://127.0.0.1:8765"


def test_it_keeps_secrets_out_of_the_settings():
    for credential in (mixin.parse_credential(keystore()), mixin.parse_credential(legacy_keystore())):
        settings = json.dumps(credential.settings)
        assert all(value not in settings for value in credential.secret_values())
        assert SEED_HEX not in repr(credential)


# --- validation ---------------------------------------------------------------------------------


def test_a_valid_contact_and_group_pass(cred):
    assert mixin.validate(contact(), cred) == []
    assert (
        mixin.validate(contact(conversation_id=CONTACT_ID.upper(), participants=[{"user_id": USER.upper()}]))
        == []
    )
    assert (
        mixin.validate(group(announcement="Hello", participants=[{"user_id": USER, "role": "ADMIN"}]), cred)
        == []
    )


@pytest.mark.parametrize("body", [None, [], "x", 3, {"participants": "x"}, {"participants": [None, 3, []]}])
def test_it_never_raises_on_garbage(body, cred):
    assert mixin.validate(body, cred)  # type: ignore[arg-type]


def test_it_rejects_a_body_that_is_not_an_object():
    assert fields(mixin.validate([])) == {"body": "The body must be a JSON object."}  # type: ignore[arg-type]


def test_it_rejects_unknown_top_level_keys():
    assert "Unknown field" in fields(mixin.validate(contact(topic="x")))["topic"]


def test_it_requires_a_category():
    body = contact()
    del body["category"]
    assert "required" in fields(mixin.validate(body))["category"]


def test_it_rejects_an_unknown_category():
    assert "GROUP or CONTACT" in fields(mixin.validate(contact(category="contact")))["category"]


def test_it_rejects_a_conversation_id_that_is_not_a_uuid():
    assert (
        "UUID"
        in fields(mixin.validate(group(conversation_id="928c5c40769c3e978387fb1ae0645311")))[
            "conversation_id"
        ]
    )


def test_it_rejects_a_random_id_that_is_not_a_uuid():
    assert "UUID" in fields(mixin.validate(group(random_id="abc")))["random_id"]


def test_it_rejects_a_random_id_on_a_contact():
    assert "GROUP" in fields(mixin.validate(contact(random_id=OTHER)))["random_id"]


def test_it_rejects_a_name_on_a_contact():
    assert "GROUP" in fields(mixin.validate(contact(name="Hi")))["name"]


def test_it_rejects_an_announcement_on_a_contact():
    assert "GROUP" in fields(mixin.validate(contact(announcement="Hi")))["announcement"]


def test_it_rejects_a_name_longer_than_512_characters():
    assert mixin.validate(group(name="é" * 512)) == []
    assert "512" in fields(mixin.validate(group(name="é" * 513)))["name"]


def test_it_rejects_an_announcement_longer_than_1024_characters():
    assert mixin.validate(group(announcement="a" * 1024)) == []
    assert "1024" in fields(mixin.validate(group(announcement="a" * 1025)))["announcement"]


def test_it_rejects_a_name_that_is_not_text():
    assert "text" in fields(mixin.validate(group(name=5)))["name"]


def test_it_requires_participants():
    body = group()
    del body["participants"]
    assert "participants" in fields(mixin.validate(body))


def test_it_rejects_participants_that_are_not_a_list():
    assert "list" in fields(mixin.validate(group(participants={"user_id": USER})))["participants"]


def test_it_rejects_a_group_without_participants():
    assert "at least one" in fields(mixin.validate(group(participants=[])))["participants"]


def test_it_accepts_256_group_participants_and_rejects_257():
    rows = [{"user_id": str(uuid.UUID(int=i + 1))} for i in range(257)]
    assert mixin.validate(group(participants=rows[:256])) == []
    assert "256" in fields(mixin.validate(group(participants=rows)))["participants"]


def test_it_rejects_two_contact_participants():
    errors = fields(mixin.validate(contact(participants=[{"user_id": USER}, {"user_id": OTHER}])))
    assert "exactly 1" in errors["participants"]


def test_it_rejects_a_contact_without_participants():
    assert "exactly 1" in fields(mixin.validate(contact(participants=[])))["participants"]


def test_it_rejects_a_participant_that_is_not_an_object():
    assert "object" in fields(mixin.validate(group(participants=[USER])))["participants.0.user_id"]


def test_it_requires_a_user_id():
    assert "required" in fields(mixin.validate_participant({"role": "ADMIN"}, 3))["participants.3.user_id"]


def test_it_rejects_a_user_id_that_is_not_a_uuid():
    assert "UUID" in fields(mixin.validate_participant({"user_id": "alice"}, 1))["participants.1.user_id"]


@pytest.mark.parametrize("role", ["admin", "OWNER", "MEMBER", 1])
def test_it_rejects_an_unknown_role(role):
    assert (
        "ADMIN" in fields(mixin.validate_participant({"user_id": USER, "role": role}))["participants.0.role"]
    )


@pytest.mark.parametrize("role", ["", "ADMIN", None])
def test_it_accepts_member_and_admin_roles(role):
    assert mixin.validate_participant({"user_id": USER, "role": role}) == []


def test_it_rejects_the_seeds_action_key_on_a_participant():
    errors = fields(mixin.validate_participant({"action": "ADD", "role": "", "user_id": USER}, 2))
    assert list(errors) == ["participants.2.action"]
    assert "/participants/" in errors["participants.2.action"]


def test_it_rejects_an_unknown_participant_key():
    assert (
        "Unknown"
        in fields(mixin.validate_participant({"user_id": USER, "session_id": OTHER}))[
            "participants.0.session_id"
        ]
    )


def test_validate_reports_row_errors_at_their_index():
    errors = fields(mixin.validate(group(participants=[{"user_id": USER}, {"user_id": "x"}])))
    assert list(errors) == ["participants.1.user_id"]


def test_it_rejects_a_user_listed_twice_whatever_the_case():
    errors = fields(mixin.validate(group(participants=[{"user_id": USER}, {"user_id": USER.upper()}])))
    assert "already listed" in errors["participants.1.user_id"]


def test_it_rejects_the_bot_itself_as_a_participant(cred):
    errors = fields(mixin.validate(group(participants=[{"user_id": APP_ID.upper()}]), cred))
    assert "bot itself" in errors["participants.0.user_id"]


def test_it_rejects_a_contact_id_other_than_the_unique_conversation_id(cred):
    expected = mixin.unique_conversation_id(APP_ID, USER)
    assert mixin.validate(contact(conversation_id=OTHER)) == []  # needs the credential
    assert expected in fields(mixin.validate(contact(conversation_id=OTHER), cred))["conversation_id"]
    assert mixin.validate(contact(conversation_id=expected.upper()), cred) == []


# --- prepare and forms ------------------------------------------------------------------------


def test_prepare_lower_cases_the_user_before_computing_the_contact_id(cred):
    prepared = mixin.prepare(contact(participants=[{"user_id": USER.upper(), "role": ""}]), cred)
    assert prepared == {
        "category": "CONTACT",
        "conversation_id": mixin.unique_conversation_id(APP_ID, USER),
        "participants": [{"user_id": USER}],
    }
    assert mixin.validate(prepared, cred) == []


def test_prepare_computes_a_group_id_from_a_fresh_random_id(cred):
    body = group(participants=[{"user_id": USER, "role": "ADMIN"}, {"user_id": OTHER.upper(), "role": ""}])
    first, second = mixin.prepare(body, cred), mixin.prepare(body, cred)
    assert uuid.UUID(first["random_id"]).version == 4
    assert first["random_id"] != second["random_id"]
    assert first["conversation_id"] == mixin.group_conversation_id(
        APP_ID, "Support", [USER, OTHER], first["random_id"]
    )
    assert first["participants"] == [{"user_id": USER, "role": "ADMIN"}, {"user_id": OTHER}]
    assert list(first) == ["category", "conversation_id", "name", "participants", "random_id"]


def test_prepare_keeps_a_given_random_id(cred):
    random_id = "01d21e2c-76f5-4940-8ea0-9b7f21728674"
    prepared = mixin.prepare(group(random_id=random_id.upper(), announcement="Hi"), cred)
    assert prepared["random_id"] == random_id
    assert prepared["announcement"] == "Hi"
    assert prepared["conversation_id"] == mixin.group_conversation_id(
        APP_ID, "Support", [USER, OTHER], random_id
    )


def test_prepare_keeps_a_given_group_id_without_inventing_a_random_id(cred):
    prepared = mixin.prepare(group(conversation_id=CONTACT_ID.upper()), cred)
    assert prepared["conversation_id"] == CONTACT_ID
    assert "random_id" not in prepared


def test_prepare_is_stable_so_a_retry_reuses_the_id(cred):
    prepared = mixin.prepare(group(), cred)
    assert mixin.prepare(prepared, cred) == prepared


def test_summarize_gives_the_name_and_user_ids():
    summary = mixin.summarize(group())
    assert summary.name == "Support"
    assert summary.participants == [USER, OTHER]
    assert mixin.summarize(contact()).name == ""
    assert mixin.summarize("junk").participants == []  # type: ignore[arg-type]


def test_body_from_fields_drops_blank_values_and_keeps_every_row():
    body = mixin.body_from_fields(
        {"category": "GROUP", "name": " Support ", "announcement": "", "conversation_id": ""},
        [{"user_id": USER, "role": ""}, {"user_id": "", "role": ""}, {"user_id": OTHER, "role": "ADMIN"}],
    )
    assert body == {
        "category": "GROUP",
        "name": "Support",
        "participants": [{"user_id": USER}, {}, {"user_id": OTHER, "role": "ADMIN"}],
    }
    assert "participants.1.user_id" in fields(mixin.validate(body))


@pytest.mark.parametrize(
    "body",
    [
        contact(),
        contact(conversation_id=CONTACT_ID),
        group(
            announcement="Line 1\nLine 2",
            participants=[{"user_id": USER, "role": "ADMIN"}, {"user_id": OTHER}],
        ),
    ],
)
def test_body_from_fields_round_trips(body):
    assert mixin.validate(body) == []
    assert mixin.body_from_fields(*mixin.fields_from_body(body)) == body


def test_the_form_fields_match_the_error_paths():
    assert [f.name for f in mixin.BODY_FIELDS] == ["category", "name", "announcement", "conversation_id"]
    assert [f.name for f in mixin.PARTICIPANT_FIELDS] == ["user_id", "role"]
    assert dict(mixin.PARTICIPANT_FIELDS[1].choices) == {"": "Member", "ADMIN": "Admin"}
    assert mixin.PARTICIPANTS_PATH == "participants"
    assert mixin.MAX_PARTICIPANTS == 256
    assert {f.name for f in mixin.CREDENTIAL_FIELDS if f.secret} == {
        "session_private_key",
        "private_key",
        "pin_token",
        "pin",
    }


# --- wire format --------------------------------------------------------------------------------


def test_create_sends_the_exact_signed_bytes(cred):
    handler, seen = serve((200, {"data": CONVERSATION}))
    created = mixin.create(
        mixin.prepare(contact(conversation_id=CONTACT_ID), cred), cred, make_http(cred, handler)
    )
    request = seen[0]
    assert request.method == "POST"
    assert str(request.url) == "https://api.mixin.one/conversations"
    assert request.content == BODY_B
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    claims = claims_of(request)
    assert claims["sig"] == "6bd1b8a249ce4df7fd60a47e75e1967e30090b7229f2fcba4a36c0427f52f7ca"
    assert claims["sig"] == hashlib.sha256(b"POST/conversations" + request.content).hexdigest()
    assert (claims["uid"], claims["sid"], claims["scp"]) == (APP_ID, SESSION_ID, "FULL")
    assert claims["exp"] - claims["iat"] == 300
    assert request.headers["x-request-id"] == claims["jti"]
    assert jwt.get_unverified_header(token_of(request)) == {"alg": "EdDSA", "typ": "JWT"}
    assert created.external_id == CONTACT_ID
    assert created.status == 200
    assert created.participants == CONVERSATION["participants"]
    assert created.body == CONVERSATION


def test_create_sends_non_ascii_text_as_utf8_and_signs_those_bytes(cred):
    handler, seen = serve((200, {"data": CONVERSATION}))
    body = mixin.prepare(group(name="Équipe ✓"), cred)
    mixin.create(body, cred, make_http(cred, handler))
    assert "Équipe ✓".encode() in seen[0].content
    assert json.loads(seen[0].content) == body
    assert claims_of(seen[0])["sig"] == mixin.signature("POST", "/conversations", seen[0].content)


def test_each_request_gets_a_fresh_jwt(cred):
    handler, seen = serve((200, {"data": CONVERSATION}))
    http = make_http(cred, handler)
    mixin.create(mixin.prepare(contact(), cred), cred, http)
    mixin.create(mixin.prepare(contact(), cred), cred, http)
    assert claims_of(seen[0])["jti"] != claims_of(seen[1])["jti"]
    assert seen[0].headers["x-request-id"] != seen[1].headers["x-request-id"]
    assert token_of(seen[0]) != token_of(seen[1])


def test_a_legacy_rsa_keystore_signs_requests_with_rs512():
    credential = mixin.parse_credential(legacy_keystore(private_key=RSA_PEM, pin_token="c2VjcmV0"))
    handler, seen = serve((200, {"data": CONVERSATION}))
    mixin.create(mixin.prepare(contact(), credential), credential, make_http(credential, handler))
    assert jwt.get_unverified_header(token_of(seen[0]))["alg"] == "RS512"
    claims = claims_of(seen[0], RSA_KEY.public_key(), "RS512")
    assert claims["sig"] == mixin.signature("POST", "/conversations", seen[0].content)


def test_the_base_url_override_is_used_and_signed_by_path_only():
    credential = mixin.parse_credential(keystore(base_url="http://127.0.0.1:8765"))
    handler, seen = serve((200, {"data": {"user_id": APP_ID, "full_name": "Bot"}}))
    mixin.check(credential, make_http(credential, handler))
    assert str(seen[0].url) == "http://127.0.0.1:8765/me"
    assert claims_of(seen[0])["sig"] == "5e6b58ffa10b3bc51724ff0bbd2afb91c4771ee340f5d685340dfa4c854bafba"


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        (400, True),
        (401, True),
        (403, True),
        (404, True),
        (429, False),
        (10002, True),
        (10006, True),
        (20116, True),
        (20133, True),
        (500, False),
        (7000, False),
        (7001, False),
    ],
)
def test_it_maps_an_error_inside_a_202_body(code, permanent, cred):
    error = {"status": 202, "code": code, "description": f"Mixin says {code}"}
    handler, _ = serve((202, {"error": error}))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert caught.value.message == f"Mixin says {code}"
    assert caught.value.code == str(code)
    assert caught.value.status == 202
    assert caught.value.permanent is permanent
    # A documented refusal or a 429 created nothing; a server error may come after the work was done.
    assert caught.value.outcome_unknown is (code in (500, 7000, 7001))


def test_an_error_body_with_http_200_is_a_failure(cred):
    handler, _ = serve(
        (200, {"error": {"status": 202, "code": 401, "description": "Unauthorized, maybe invalid token."}})
    )
    with pytest.raises(ProviderError) as caught:
        mixin.check(cred, make_http(cred, handler))
    assert str(caught.value) == "Unauthorized, maybe invalid token. (code 401)"


def test_it_shows_the_extra_details_of_an_invalid_field(cred):
    error = {
        "status": 202,
        "code": 10002,
        "description": "The request data has invalid field.",
        "extra": {"field": "name"},
    }
    handler, _ = serve((202, {"error": error}))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(group(), cred), cred, make_http(cred, handler))
    assert caught.value.message == 'The request data has invalid field.: {"field": "name"}'


def test_a_429_status_is_retryable_with_its_retry_after(cred):
    def handler(request):
        return httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")

    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert (caught.value.permanent, caught.value.retry_after, caught.value.status) == (False, 7.0, 429)


def test_a_5xx_without_json_is_a_retryable_server_error(cred):
    handler, _ = serve((502, b"<html>Bad gateway</html>"))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert "server error (HTTP 502)" in caught.value.message
    assert caught.value.permanent is False
    assert caught.value.outcome_unknown is True


def test_a_5xx_with_an_error_body_keeps_mixins_message(cred):
    handler, _ = serve((500, {"error": {"status": 500, "code": 500, "description": "Internal Server Error"}}))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert (caught.value.message, caught.value.permanent) == ("Internal Server Error", False)
    assert caught.value.outcome_unknown is True


def test_a_2xx_that_is_not_json_is_malformed(cred):
    handler, _ = serve((200, b"not json"))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert "not JSON" in caught.value.message
    assert caught.value.code == "malformed"
    assert caught.value.outcome_unknown is True  # the body carries our conversation_id: look it up


def test_a_2xx_whose_error_is_not_an_object_leaves_the_outcome_unknown(cred):
    handler, _ = serve((200, {"error": "something"}))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert caught.value.outcome_unknown is True


def test_a_read_that_is_not_json_is_no_unknown_outcome(cred):
    handler, _ = serve((200, b"not json"))
    with pytest.raises(ProviderError) as caught:
        mixin.check(cred, make_http(cred, handler))
    assert (caught.value.code, caught.value.outcome_unknown) == ("malformed", False)


def test_a_2xx_without_data_is_malformed(cred):
    handler, _ = serve((200, {"result": {}}))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert "without a data object" in caught.value.message
    assert caught.value.outcome_unknown is True


def test_a_4xx_without_an_error_body_is_a_failure(cred):
    handler, _ = serve((403, {"message": "nope"}))
    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert (caught.value.status, caught.value.permanent, caught.value.outcome_unknown) == (403, True, False)


def test_a_read_timeout_on_create_leaves_the_outcome_unknown(cred):
    def handler(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert caught.value.outcome_unknown is True


def test_a_refused_connection_is_retryable_and_certainly_not_sent(cred):
    def handler(request):
        raise httpx.ConnectError("Connection refused", request=request)

    with pytest.raises(ProviderError) as caught:
        mixin.create(mixin.prepare(contact(), cred), cred, make_http(cred, handler))
    assert (caught.value.permanent, caught.value.outcome_unknown) == (False, False)


# --- lookup, fetch, check -----------------------------------------------------------------------


def test_lookup_gets_the_conversation_by_its_id(cred):
    handler, seen = serve((200, {"data": CONVERSATION}))
    found = mixin.lookup(
        {"category": "CONTACT", "conversation_id": CONTACT_ID}, cred, make_http(cred, handler)
    )
    assert found is not None
    assert found.external_id == CONTACT_ID
    assert found.participants == CONVERSATION["participants"]
    assert seen[0].method == "GET"
    assert str(seen[0].url) == f"https://api.mixin.one/conversations/{CONTACT_ID}"
    assert seen[0].content == b""
    assert claims_of(seen[0])["sig"] == "2fd37dca5b35d47f19b95d370900687133757b3491121db26ccd3eb75120a6be"


def test_lookup_returns_none_when_mixin_has_no_such_conversation(cred):
    handler, _ = serve(
        (202, {"error": {"status": 202, "code": 404, "description": "The endpoint is not found."}})
    )
    assert mixin.lookup({"conversation_id": CONTACT_ID}, cred, make_http(cred, handler)) is None


def test_lookup_without_an_id_sends_nothing(cred):
    handler, seen = serve((200, {"data": CONVERSATION}))
    assert mixin.lookup({"category": "GROUP"}, cred, make_http(cred, handler)) is None
    assert seen == []


def test_lookup_raises_other_errors(cred):
    handler, _ = serve((202, {"error": {"status": 202, "code": 401, "description": "Unauthorized"}}))
    with pytest.raises(ProviderError):
        mixin.lookup({"conversation_id": CONTACT_ID}, cred, make_http(cred, handler))


def test_a_timeout_on_a_lookup_is_not_an_unknown_outcome(cred):
    def handler(request):
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(ProviderError) as caught:
        mixin.lookup({"conversation_id": CONTACT_ID}, cred, make_http(cred, handler))
    assert caught.value.outcome_unknown is False


def test_fetch_reads_the_conversation_and_its_participants(cred):
    handler, seen = serve((200, {"data": CONVERSATION}))
    fetched = mixin.fetch(CONTACT_ID.upper(), cred, make_http(cred, handler))
    assert fetched.external_id == CONTACT_ID
    assert fetched.conversation == CONVERSATION
    assert fetched.participants == CONVERSATION["participants"]
    assert seen[0].url.path == f"/conversations/{CONTACT_ID}"


def test_fetch_refuses_an_id_that_is_not_a_uuid(cred):
    handler, seen = serve((200, {"data": CONVERSATION}))
    with pytest.raises(ProviderError) as caught:
        mixin.fetch("../me", cred, make_http(cred, handler))
    assert caught.value.code == "invalid_id"
    assert seen == []


def test_check_reads_me(cred):
    handler, seen = serve((200, {"data": {"user_id": APP_ID, "full_name": "Support Bot"}}))
    message = mixin.check(cred, make_http(cred, handler))
    assert message == f"Authenticated as Support Bot ({APP_ID})"
    assert (seen[0].method, str(seen[0].url)) == ("GET", "https://api.mixin.one/me")
    assert claims_of(seen[0])["sig"] == "5e6b58ffa10b3bc51724ff0bbd2afb91c4771ee340f5d685340dfa4c854bafba"


def test_check_fails_when_me_is_another_user(cred):
    handler, _ = serve((200, {"data": {"user_id": USER, "full_name": "Someone"}}))
    with pytest.raises(ProviderError) as caught:
        mixin.check(cred, make_http(cred, handler))
    assert USER in caught.value.message
    assert APP_ID in caught.value.message


# --- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [keystore(), legacy_keystore(), legacy_keystore(private_key=RSA_PEM)],
    ids=["current", "legacy", "rsa"],
)
def test_no_secret_reaches_the_exchanges_or_the_logs(data, caplog):
    caplog.set_level(logging.DEBUG, logger="providers.http")
    credential = mixin.parse_credential(data)
    tokens: list[str] = []

    def handler(request):
        token = token_of(request)
        tokens.append(token)
        if request.url.path == "/me":  # a careless server echoing secrets back
            data = {"user_id": APP_ID, "full_name": "Bot", "pin_token": LEGACY_PIN_TOKEN, "echo": token}
            return httpx.Response(200, json={"data": data})
        if request.method == "GET":
            return httpx.Response(202, json={"error": {"status": 202, "code": 401, "description": token}})
        return httpx.Response(200, json={"data": CONVERSATION})

    http = make_http(credential, handler)
    mixin.create(mixin.prepare(contact(), credential), credential, http)
    mixin.check(credential, http)
    with pytest.raises(ProviderError):
        mixin.fetch(CONTACT_ID, credential, http)

    recorded = json.dumps([e.as_dict() for e in http.exchanges], default=str) + caplog.text
    assert len(http.exchanges) == 3
    assert "Bearer [redacted]" in recorded
    values = [*credential.secret_values(), SEED_HEX, *tokens]
    for value in values:
        for form in {
            value,
            quote(value, safe=""),
            quote_plus(value),
            base64.b64encode(value.encode()).decode(),
        }:
            assert form not in recorded
