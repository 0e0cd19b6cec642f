"""Real HTTP clients for the conversation APIs of four messaging providers (no Django import).

Use ``providers.get("twilio")`` for a provider module; each offers the functions of
:class:`providers.base.Provider`. See providers/README.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers.base import Provider

__version__ = "0.1.0"

#: Provider names, in the order the UI lists them, with their display labels.
NAMES = {
    "mixin": "Mixin Messenger",
    "twilio": "Twilio Conversations",
    "highlevel": "HighLevel",
    "msgraph": "Microsoft Graph",
}


#: Where each provider's module lives; ``register`` adds one (e.g. a provider only the tests use).
MODULES = {name: f"providers.{name}" for name in NAMES}


def register(name: str, label: str, module: str) -> None:
    """Offer another provider: ``module`` is its import path (it follows :class:`providers.base.Provider`)."""
    NAMES[name] = label
    MODULES[name] = module


def get(name: str) -> Provider:
    """The provider module called ``name``, its left-out hooks filled with the defaults; ``KeyError`` for
    an unknown one."""
    if name not in NAMES:
        raise KeyError(f"Unknown provider {name!r}; choose one of {', '.join(NAMES)}.")
    module = importlib.import_module(MODULES[name])
    if not getattr(module, "_hooks_filled", False):
        from providers.base import HOOK_DEFAULTS

        for hook, default in HOOK_DEFAULTS.items():
            if not hasattr(module, hook):
                setattr(module, hook, default)
        module._hooks_filled = True
    return module  # type: ignore[return-value]


def record_title(provider: str, name: str, participants: list, external_id: str) -> str:
    """What people call a record: its name; else the provider's ``UNTITLED`` with its first participant
    (HighLevel: "Contact …"); else the external id."""
    if name:
        return name
    untitled = get(provider).UNTITLED if provider in NAMES else ""
    if untitled and participants:
        return untitled.format(participant=participants[0])
    return external_id
