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


def get(name: str) -> Provider:
    """The provider module called ``name``; ``KeyError`` for an unknown one."""
    if name not in NAMES:
        raise KeyError(f"Unknown provider {name!r}; choose one of {', '.join(NAMES)}.")
    return importlib.import_module(f"providers.{name}")  # type: ignore[return-value]


def all_providers() -> dict[str, Provider]:
    return {name: get(name) for name in NAMES}
