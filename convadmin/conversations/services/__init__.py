"""Every provider call about a conversation, by concern: ``create`` (create once, settle by look-up, retry,
check with the provider), ``actions`` (the jobs a person starts on a record, and the settle job),
``refresh`` and ``preview``; ``common`` holds what they share.

Views and commands call these functions and never touch httpx or decrypted secrets themselves.
"""

from convadmin.conversations.services.actions import (
    FAILED_PREFIX,
    LABELS,
    action_refusal,
    busy,
    run_action,
    settle_conversations,
    start_action,
    unsettled,
)
from convadmin.conversations.services.common import (
    ActionRefused,
    Advice,
    CallFailed,
    KeyReused,
    Lookup,
    ValidationFailed,
    errors_by_path,
    failure_advice,
    may_exist,
    natural_key,
    natural_key_name,
    public_credential,
    unknown_reason,
    validate_body,
)
from convadmin.conversations.services.create import (
    can_check_with_provider,
    do_check_with_provider,
    do_create_conversation,
    do_retry_conversation,
    in_flight,
    is_empty,
    run_create,
    same_request,
)
from convadmin.conversations.services.preview import Preview, preview_request
from convadmin.conversations.services.refresh import (
    do_refresh_conversation,
    participant_differences,
    participant_key,
    refresh_summary,
)

__all__ = [
    "FAILED_PREFIX",
    "LABELS",
    "ActionRefused",
    "Advice",
    "CallFailed",
    "KeyReused",
    "Lookup",
    "Preview",
    "ValidationFailed",
    "action_refusal",
    "busy",
    "can_check_with_provider",
    "do_check_with_provider",
    "do_create_conversation",
    "do_refresh_conversation",
    "do_retry_conversation",
    "errors_by_path",
    "failure_advice",
    "in_flight",
    "is_empty",
    "may_exist",
    "natural_key",
    "natural_key_name",
    "participant_differences",
    "participant_key",
    "preview_request",
    "public_credential",
    "refresh_summary",
    "run_action",
    "run_create",
    "same_request",
    "settle_conversations",
    "start_action",
    "unknown_reason",
    "unsettled",
    "validate_body",
]
