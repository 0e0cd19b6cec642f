"""Forms built from a provider module's own field lists: its body fields and one participant row.

Every Django field is optional: the provider's ``validate`` (the same rules the command line uses)
decides what is required, and its messages are attached to these fields by path.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from django import forms
from django.forms import BoundField
from django.urls import reverse

import providers
from convadmin.credentials.forms import form_field
from providers.base import Field

PREFIX = "participants"
ROW_NAME = re.compile(rf"^{PREFIX}-(\d+)-(.+)$")


def css_id(name: str) -> str:
    """An id usable in a CSS selector (``hx-target``): dots and other punctuation become dashes."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _form_field(spec: Field) -> forms.Field:
    """A body or participant input: typed text is kept as typed (the provider judges spaces)."""
    return form_field(spec, attrs={"rows": "4"} if spec.widget == "textarea" else None, strip=False)


def _form_class(name: str, specs: list[Field]) -> type[forms.Form]:
    return type(name, (forms.Form,), {spec.name: _form_field(spec) for spec in specs})


@cache
def body_form_class(provider: str) -> type[forms.Form]:
    """The provider's ``BODY_FIELDS`` as a form; field names are the error paths."""
    return _form_class(f"{provider.title()}BodyForm", providers.get(provider).BODY_FIELDS)


@cache
def participant_form_class(provider: str) -> type[forms.Form]:
    """One participant row from the provider's ``PARTICIPANT_FIELDS`` (sub-paths as field names)."""
    return _form_class(f"{provider.title()}ParticipantForm", providers.get(provider).PARTICIPANT_FIELDS)


def participant_formset_class(provider: str) -> type[forms.BaseFormSet]:
    module = providers.get(provider)
    return forms.formset_factory(
        participant_form_class(provider), extra=0, max_num=module.MAX_PARTICIPANTS, absolute_max=1000
    )


@dataclass
class FieldView:
    """What the template needs for one input: the bound field, a CSS-safe id stem, required or not."""

    bound: BoundField
    slug: str
    required: bool


def wire(
    form: forms.Form, specs: list[Field], placeholders: Mapping[str, str] | None = None
) -> list[FieldView]:
    """Make each input validate itself when the user leaves it (``conversation_validate_field``), and
    describe it by its help and errors."""
    url = reverse("conversation_validate_field")
    views = []
    for spec in specs:
        bound = form[spec.name]
        slug = css_id(bound.html_name)
        attrs = bound.field.widget.attrs
        attrs.update(
            {
                "hx-post": url,
                "hx-trigger": "change",
                "hx-target": f"#err-{slug}",
                "hx-swap": "outerHTML",
                "hx-vals": json.dumps({"_validate_field": bound.html_name}),
                "aria-describedby": " ".join(
                    [f"{bound.auto_id}_helptext"] * bool(spec.help) + [f"err-{slug}"]
                ),
            }
        )
        if placeholders and placeholders.get(spec.name):
            attrs["placeholder"] = placeholders[spec.name]
        views.append(FieldView(bound=bound, slug=slug, required=spec.required))
    return views


def row_values(data: Mapping[str, Any], specs: list[Field], index: int) -> dict[str, str]:
    return {spec.name: str(data.get(f"{PREFIX}-{index}-{spec.name}", "")) for spec in specs}


def present_rows(data: Mapping[str, Any], specs: list[Field]) -> list[tuple[int, dict[str, str]]]:
    """The participant rows in the posted form, by index (a removed row is simply absent)."""
    indices = sorted({int(match.group(1)) for key in data if (match := ROW_NAME.match(key))})
    return [(index, row_values(data, specs, index)) for index in indices]


def is_blank(row: Mapping[str, str]) -> bool:
    return not any(str(value).strip() for value in row.values())
