"""A loopback emulator of the four provider APIs, for demos, manual QA and end-to-end tests.

The real client code (``providers.mixin``, ``twilio``, ``highlevel``, ``msgraph``) runs against it
unchanged: point the credential's ``base_url`` (and for Graph ``login_url``) at the sandbox.
:meth:`Sandbox.credentials` returns ready-made credentials that do exactly that.

**One port per provider.** A credential's ``base_url`` is scheme + host only (no path), and Mixin
and HighLevel both own ``/conversations…``; so the sandbox runs four ``ThreadingHTTPServer``\\ s on
127.0.0.1 (OS-chosen ports, or N…N+3 with ``port=N`` / ``--port N``), one per API, all behind one
:class:`Sandbox`. Graph's login and API hosts share one port (their paths do not clash).

What is real: authentication (Mixin EdDSA JWTs with the ``sig`` claim, Twilio Basic, HighLevel
bearer tokens of one location plus ``Version``, Graph app-only vs delegated tokens, rotating
refresh tokens, PKCE), the success and error bodies and statuses each provider documents. State lives
in memory. Keys, ids and the seeded tokens derive from ``seed`` (``Sandbox(seed="demo")``), so a
restarted sandbox with the same seed accepts the same credentials, including rotated refresh
tokens (tokens are signed, not stored; only "already used" is remembered, per process).

**QA triggers** (case-insensitive; ``-``, ``_`` and spaces ignored, so ``fail-500`` = ``FAIL500``),
looked for in a create's user-chosen values — Mixin ``name``/``announcement`` or the special
participant ids below; Twilio ``FriendlyName``, ``UniqueName``, participant identity/addresses;
HighLevel ``contactId`` (alphanumerics only, e.g. ``fail500AAAAAAAAAAAAA``); Graph ``topic`` and
``newParticipants`` names/addresses:

- ``fail-500``: HTTP 500 in the provider's error shape; nothing is created.
- ``rate-limit``: 429 with ``Retry-After: 2`` and the provider's 429 body (Mixin: HTTP 202 with
  code 429, as its error-code page says); nothing is created.
- ``slow``: the conversation is created, then the reply is held ``slow_seconds`` (default 25 s,
  longer than the clients' 20 s read timeout): an unknown outcome that really happened, so a
  lookup finds it.
- ``duplicate``: the conversation "already exists" (it is created, dated an hour back) and the
  provider's duplicate answer comes back: Mixin returns it as a normal success; Twilio 409 50353
  (needs a ``UniqueName`` to be found later); HighLevel 400 ``Conversation with the contact
  id:<id> already exists!``; Graph 409 ``nameAlreadyExists`` (sandbox-only, Graph has no such check).
- ``invalid-json``: created, and the success status comes back with a truncated JSON body.
- ``drip``: created, and the reply's body goes out one byte every ``drip_seconds`` (default 1 s):
  every read is within the read timeout, the whole reply takes minutes; only a deadline ends it.

Mixin user ids that trigger (for CONTACT conversations, which have no name):
``00000000-0000-4000-8000-000000000500`` fail-500, ``…000000000429`` rate-limit,
``…000000000409`` duplicate, ``…000000000bad`` invalid-json, ``…000000000408`` slow,
``…0000000000d1`` drip.

Run it with ``python -m providers.sandbox [--port N] [--seed S] [--credentials-out FILE]``;
see ``providers/sandbox/README.md``.
"""

from __future__ import annotations

from providers.sandbox.server import PROVIDERS, TRIGGERS, Sandbox, find_trigger

__all__ = ["PROVIDERS", "TRIGGERS", "Sandbox", "find_trigger"]
