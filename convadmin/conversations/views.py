"""The create side: dashboard and the new-conversation builder (provider → credential → fields → rows).

The builder's POST previews (``_preview``), starts another like this (``_another``) or creates; without
JavaScript it also adds or removes a participant row (``_add_row``, ``_remove_row``) by re-rendering the
form. With htmx, checking a field as the user leaves it and adding or removing a row are small views of
their own (:func:`validate_field`, :func:`add_row`, :func:`remove_row`) answering fragments (partials of
``conversations/new.html``). The create key in the form is spent by a success: the same body again is a double submit (the
first record comes back), another body is refused until "Create another like this" gives a fresh key.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_http_methods, require_safe
from django_htmx.http import push_url, reswap, retarget

import providers
from convadmin.accounts.roles import CREATORS, role_required
from convadmin.audit.services import client_ip
from convadmin.conversations import forms as builder
from convadmin.conversations import services
from convadmin.conversations.models import Conversation, Status
from convadmin.credentials.forms import place_errors
from convadmin.credentials.models import Credential
from convadmin.drafts import services as drafts
from convadmin.lists.views import fragment_or_page
from providers.base import dig

TEMPLATE = "conversations/new.html"


# --- the page's state ---------------------------------------------------------------------------


@dataclass
class Row:
    index: int
    number: int
    form: forms.Form
    fields: list[builder.FieldView]

    @property
    def dom_id(self) -> str:
        return f"participant-{self.index}"


@dataclass
class Page:
    """Everything the builder shows: the choice, the forms, the errors and what came back."""

    provider: str = ""
    credentials: list[Credential] = field(default_factory=list)
    credential: Credential | None = None
    body_form: forms.Form | None = None
    body_fields: list[builder.FieldView] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    total_forms: int = 0
    form_errors: list[str] = field(default_factory=list)
    participant_errors: list[str] = field(default_factory=list)
    idempotency_key: str = ""
    notice: str = ""
    preview: services.Preview | None = None
    preview_error: str = ""
    result: Conversation | None = None
    refused: Conversation | None = None
    confirm_empty: bool = False
    json_mode: bool = False  # "Edit as JSON": the body as text instead of the form
    json_text: str = ""
    json_errors: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (path, label, messages)
    template_error: str = ""

    @property
    def module(self) -> Any:
        return providers.get(self.provider)

    @property
    def label(self) -> str:
        return providers.NAMES.get(self.provider, "")

    @property
    def any_required(self) -> bool:
        return any(view.required for view in self.body_fields) or any(
            view.required for row in self.rows for view in row.fields
        )

    @property
    def has_participants(self) -> bool:
        return bool(self.provider and self.module.PARTICIPANT_FIELDS)

    def url(self) -> str:
        """The builder's address for this choice (pushed to the history; a reload shows the same step)."""
        query = QueryDict(mutable=True)
        if self.provider:
            query["provider"] = self.provider
        if self.credential:
            query["credential"] = str(self.credential.pk)
        return f"{reverse('conversation_new')}?{query.urlencode()}" if query else reverse("conversation_new")

    def error_summary(self) -> list[tuple[str, str]]:
        """(anchor, message) for every problem, in page order: the box at the top links to each."""
        items = [("form-errors", message) for message in self.form_errors]
        for view in self.body_fields:
            items += [(view.bound.id_for_label, f"{view.bound.label}: {e}") for e in view.bound.errors]
        items += [("participants-errors", message) for message in self.participant_errors]
        for row in self.rows:
            items += [(row.dom_id, f"Participant {row.number}: {e}") for e in row.form.non_field_errors()]
            for view in row.fields:
                items += [
                    (view.bound.id_for_label, f"Participant {row.number}, {view.bound.label}: {e}")
                    for e in view.bound.errors
                ]
        return items

    def context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        module = self.module if self.provider else None
        count = len(self.rows)
        return {
            "page": self,
            "provider_choices": list(providers.NAMES.items()),
            "provider": self.provider,
            "provider_label": self.label,
            "credentials": self.credentials,
            "credential": self.credential,
            "form_url": self.url(),
            "max_participants": module.MAX_PARTICIPANTS if module else 0,
            "preview_hint": module.PREVIEW_HINT if module else "",
            "at_cap": bool(module) and count >= module.MAX_PARTICIPANTS,
            "error_summary": self.error_summary(),
            **extra,
        }


def _choose(provider: str, credential_id: str | None, *, enabled_only: bool = True) -> Page:
    """Step 1: the provider and, among its enabled credentials, the chosen one (or the only one)."""
    if provider not in providers.NAMES:
        return Page()
    credentials = list(Credential.objects.enabled().filter(provider=provider).order_by("label"))
    page = Page(provider=provider, credentials=credentials)
    if credential_id and str(credential_id).isdigit():
        pool = Credential.objects.filter(provider=provider)
        page.credential = (pool.enabled() if enabled_only else pool).filter(pk=credential_id).first()
    if page.credential is None and len(credentials) == 1 and enabled_only:
        page.credential = credentials[0]  # also after switching provider: the old id is another provider's
    return page


def _placeholders(page: Page) -> dict[str, str]:
    """Defaults that come from the credential (HighLevel location, Graph group) shown in the empty input."""
    assert page.credential is not None
    defaults = page.module.SETTING_DEFAULTS
    return {
        name: f"{page.credential.settings[setting]} (the credential's)"
        for name, setting in defaults.items()
        if page.credential.settings.get(setting)
    }


def _new_row(page: Page, index: int, number: int) -> Row:
    """One empty row of the formset, at ``index`` (what "Add participant" returns)."""
    form_class = builder.participant_form_class(page.provider)
    form = form_class(prefix=f"{builder.PREFIX}-{index}", use_required_attribute=False)
    return Row(
        index=index,
        number=number,
        form=form,
        fields=builder.wire(form, page.module.PARTICIPANT_FIELDS),
    )


def _build_forms(page: Page, fields: dict[str, str], rows: list[dict[str, str]], *, bound: bool) -> None:
    """Step 2's forms; rows are numbered 0… afresh (removed rows leave no gaps in a full render)."""
    module = page.module
    form_class = builder.body_form_class(page.provider)
    if bound:
        page.body_form = form_class(data=fields, use_required_attribute=False)
        page.body_form.is_valid()
    else:
        page.body_form = form_class(initial=fields, use_required_attribute=False)
    page.body_fields = builder.wire(page.body_form, module.BODY_FIELDS, _placeholders(page))
    formset_class = builder.participant_formset_class(page.provider)
    options = {"prefix": builder.PREFIX, "form_kwargs": {"use_required_attribute": False}}
    if bound:
        data = {f"{builder.PREFIX}-TOTAL_FORMS": str(len(rows)), f"{builder.PREFIX}-INITIAL_FORMS": "0"}
        for index, values in enumerate(rows):
            data |= {f"{builder.PREFIX}-{index}-{name}": value for name, value in values.items()}
        formset = formset_class(data=data, **options)
        formset.is_valid()
    else:
        formset = formset_class(initial=rows, **options)
    page.rows = [
        Row(index=i, number=i + 1, form=form, fields=builder.wire(form, module.PARTICIPANT_FIELDS))
        for i, form in enumerate(formset.forms)
    ]
    page.total_forms = len(page.rows)


def _posted(page: Page, data: QueryDict) -> tuple[dict[str, str], list[dict[str, str]]]:
    module = page.module
    fields = {spec.name: data.get(spec.name, "") for spec in module.BODY_FIELDS}
    rows = [values for _, values in builder.present_rows(data, module.PARTICIPANT_FIELDS)]
    return fields, rows


def _body(page: Page, fields: dict[str, str], rows: list[dict[str, str]]) -> tuple[dict[str, Any], list[int]]:
    """The provider body from the form (blank rows skipped) and, per body participant, its row number."""
    kept = [(i, values) for i, values in enumerate(rows) if not builder.is_blank(values)]
    return page.module.body_from_fields(fields, [values for _, values in kept]), [i for i, _ in kept]


def _apply_errors(page: Page, errors: dict[str, list[str]], row_of: list[int]) -> None:
    """Put each error at the input that caused it: body field, participant field, or a box (in JSON
    mode: a list under the text, by JSON path)."""
    module = page.module
    if page.json_mode:
        page.json_errors = [
            (where, _path_label(page, where), messages_) for where, messages_ in errors.items()
        ]
        return
    path = module.PARTICIPANTS_PATH
    left = list(errors.items())
    if page.body_form is not None:
        left = place_errors(page.body_form, left, [spec.name for spec in module.BODY_FIELDS])
    for where, messages_ in left:
        if path and where.startswith(f"{path}."):
            position, _, sub = where[len(path) + 1 :].partition(".")
            if position.isdigit() and int(position) < len(row_of):
                form = page.rows[row_of[int(position)]].form
                for _, not_an_input in place_errors(form, [(sub, messages_)]):
                    form.add_error(None, not_an_input)
                continue
        if path and where.startswith(path):
            page.participant_errors += messages_
        else:
            page.form_errors += messages_


def _render(request: HttpRequest, page: Page, partial: str | None, **extra: Any) -> HttpResponse:
    """The partial for htmx, the whole page otherwise (also for htmx history restores)."""
    name = fragment_or_page(request, TEMPLATE, partial) if partial else TEMPLATE
    response = render(request, name, page.context(request, **extra))
    patch_vary_headers(response, ("HX-Request",))
    return response


# --- the view -----------------------------------------------------------------------------------


@role_required(CREATORS)
@require_http_methods(["GET", "POST"])
def new_conversation(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _show(request)
    data = request.POST
    if "_validate_field" in data:  # a page from before validation had its own address: never a create
        return HttpResponseBadRequest("Reload the page: fields are checked at another address now.")
    page = _choose(data.get("provider", ""), data.get("credential"), enabled_only=False)
    if page.credential is None:
        page.form_errors.append("Choose a provider and one of its credentials.")
        response = _render(request, page, "builder")
        if request.htmx:
            retarget(response, "#builder")
            reswap(response, "innerHTML")
        return response
    page.idempotency_key = _key(data.get("idempotency_key"))
    if data.get("mode") == "json":
        return _json_action(request, page, data)
    fields, rows = _posted(page, data)
    if "_add_row" in data or "_remove_row" in data:  # without JavaScript: the whole form again
        kept, added = _edit_rows(page, data, add="_add_row" in data)
        rows = [values for _, values in kept] + [{}] * added
    _build_forms(page, fields, rows, bound=True)
    if "_add_row" in data or "_remove_row" in data:
        return _render(request, page, "step2")
    if "_another" in data:
        return _another(request, page, fields, rows)
    body, row_of = _body(page, fields, rows)
    if "_json_mode" in data:  # "Edit as JSON": the body this form would send, as text
        _to_json(page, body)
        return _render(request, page, "step2")
    if "_save_template" in data:
        return _save_template(request, page, body)
    if "_preview" in data:
        return _preview(request, page, body, row_of)
    return _submit(request, page, body, row_of)


def _key(value: str | None) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return str(uuid.uuid4())


def _show(request: HttpRequest) -> HttpResponse:
    source = request.GET.get("from")
    if source:
        return _duplicate(request, source)
    template = request.GET.get("template")
    if template:
        return _from_template(request, template)
    page = _choose(request.GET.get("provider", ""), request.GET.get("credential"))
    if page.credential is not None:
        page.idempotency_key = str(uuid.uuid4())
        _build_forms(page, {}, [{}] if page.has_participants else [], bound=False)
    response = _render(request, page, "builder")
    if request.htmx:
        push_url(response, page.url())
    return response


def _duplicate(request: HttpRequest, source: str) -> HttpResponse:
    """ "Duplicate as new": the fields and rows of a record (its body holds no secret), ids left blank."""
    if not source.isdigit():
        raise Http404("No such conversation.")
    original = get_object_or_404(Conversation.objects.select_related("credential"), pk=source)
    page = _choose(original.provider, None if original.credential.disabled else str(original.credential_id))
    notice = f"Copied from conversation {original.pk}."
    return _fill(
        request, page, original.request_body or {}, notice, " Its credential is disabled: choose another one."
    )


def _from_template(request: HttpRequest, source: str) -> HttpResponse:
    """ "Start from template": its fields on the form, as "Duplicate as new" fills them."""
    if not source.isdigit():
        raise Http404("No such template.")
    template = get_object_or_404(drafts.usable_templates(request.user), pk=source)
    credential = template.credential
    usable = credential is not None and not credential.disabled and credential.provider == template.provider
    page = _choose(template.provider, str(credential.pk) if usable and credential else None)
    notice = f"From template “{template.name}”."
    if not usable and page.credential is not None:
        notice += f" Its credential is disabled or gone: “{page.credential.label}” is used instead."
    return _fill(request, page, template.body, notice, " Its credential is disabled or gone: choose one.")


def _fill(
    request: HttpRequest, page: Page, body: dict[str, Any], notice: str, no_credential: str
) -> HttpResponse:
    """The builder filled from a body (a record's or a template's): ids each conversation needs its own and
    the credential's defaults left empty; a body with keys the form cannot show opens as JSON."""
    module = page.module
    fields, rows = module.fields_from_body(body)
    hidden = _unshown(page, body, fields, rows)
    for name, setting in module.SETTING_DEFAULTS.items():
        if page.credential and fields.get(name) == page.credential.settings.get(setting):
            fields.pop(name)  # the credential's default: leave the input empty so it follows the credential
    page.notice = notice + _clear_unique(page, fields)
    if page.credential is None:
        page.notice += no_credential
        return _render(request, page, "builder")
    page.idempotency_key = str(uuid.uuid4())
    if hidden:
        _to_json(page, {key: value for key, value in body.items() if key not in module.NOT_DUPLICATED})
        page.notice += f" It has fields the form cannot show ({', '.join(hidden)}), so it opens as JSON."
        return _render(request, page, "builder")
    if not rows and page.has_participants:
        rows = [{}]
    _build_forms(page, fields, rows, bound=False)
    return _render(request, page, "builder")


def _clear_unique(page: Page, fields: dict[str, str]) -> str:
    """Empty the fields no two conversations may share; a sentence naming them (or "")."""
    cleared = [name for name in page.module.NOT_DUPLICATED if fields.pop(name, "")]
    labels = {spec.name: spec.label for spec in page.module.BODY_FIELDS}
    if not cleared:
        return ""
    return f" Cleared, as each conversation needs its own: {', '.join(labels.get(n, n) for n in cleared)}."


# --- small actions (htmx) -----------------------------------------------------------------------


def builder_action(action: Callable[[HttpRequest, Page], HttpResponse]) -> Callable[..., HttpResponse]:
    """A small htmx action of the builder at its own address: a POST of the whole form, answered with a
    fragment; ``action`` gets the chosen provider and credential (none chosen: 400)."""

    @role_required(CREATORS)
    @require_http_methods(["POST"])
    @wraps(action)
    def view(request: HttpRequest) -> HttpResponse:
        page = _choose(request.POST.get("provider", ""), request.POST.get("credential"), enabled_only=False)
        if page.credential is None:
            return HttpResponseBadRequest("Choose a provider and a credential first.")
        return action(request, page)

    return view


def _edit_rows(page: Page, data: QueryDict, *, add: bool) -> tuple[list[tuple[int, dict[str, str]]], bool]:
    """ "Add participant" or "Remove" on the posted rows: ``(index, values)`` of the rows kept (less the one
    ``_remove_row`` names) and whether a new row is added (not past the provider's limit)."""
    removed = data.get("_remove_row")
    present = builder.present_rows(data, page.module.PARTICIPANT_FIELDS)
    kept = [(index, values) for index, values in present if str(index) != removed]
    return kept, add and len(kept) < page.module.MAX_PARTICIPANTS


@builder_action
def validate_field(request: HttpRequest, page: Page) -> HttpResponse:
    """One input left by the user: only its error container (and cleared ones of its neighbours)."""
    module = page.module
    data = request.POST
    name = data.get("_validate_field", "")
    match = builder.ROW_NAME.match(name)
    row_specs = {spec.name: spec for spec in module.PARTICIPANT_FIELDS}
    if match and match.group(2) in row_specs and module.PARTICIPANTS_PATH:
        index = int(match.group(1))
        values = builder.row_values(data, module.PARTICIPANT_FIELDS, index)
        errors: dict[str, list[str]] = {}
        if not builder.is_blank(values):
            body = module.body_from_fields({}, [values])
            rows = dig(body, module.PARTICIPANTS_PATH)
            row = rows[0] if isinstance(rows, list) and rows else {}
            errors = services.errors_by_path(module.validate_participant(row, index))
        prefix = f"{module.PARTICIPANTS_PATH}.{index}."
        names = {f"{builder.PREFIX}-{index}-{spec}": prefix + spec for spec in row_specs}
    elif name in {spec.name for spec in module.BODY_FIELDS}:
        fields, rows_ = _posted(page, data)
        body, _ = _body(page, fields, rows_)
        errors = services.validate_body(body, page.credential) if page.credential else {}
        names = {spec.name: spec.name for spec in module.BODY_FIELDS}
    else:
        return HttpResponseBadRequest("Unknown field.")
    target = _container(name, errors.get(names[name], []))
    cleared = [_container(html, []) for html, path in names.items() if html != name and not errors.get(path)]
    context: dict[str, Any] = {"target": target, "cleared": cleared}
    if "_summary" in data:  # the page shows the whole-form summary: keep it in step with the fields
        _check_as_shown(page, data)
        context = page.context(request, **context, summary_refresh=True)
    return render(request, f"{TEMPLATE}#validation", context)


def _check_as_shown(page: Page, data: QueryDict) -> None:
    """Bind and validate the whole form as posted; rows keep their indices (the page has gaps after a
    removal until its next full render), so the summary's links still reach their inputs."""
    module = page.module
    fields, _ = _posted(page, data)
    page.body_form = builder.body_form_class(page.provider)(data=fields, use_required_attribute=False)
    page.body_form.is_valid()
    page.body_fields = builder.wire(page.body_form, module.BODY_FIELDS)
    present = builder.present_rows(data, module.PARTICIPANT_FIELDS)
    form_class = builder.participant_form_class(page.provider)
    page.rows = []
    for number, (index, values) in enumerate(present, 1):
        prefix = f"{builder.PREFIX}-{index}"
        form = form_class(
            data={f"{prefix}-{k}": v for k, v in values.items()}, prefix=prefix, use_required_attribute=False
        )
        form.is_valid()
        page.rows.append(Row(index, number, form, builder.wire(form, module.PARTICIPANT_FIELDS)))
    body, row_of = _body(page, fields, [values for _, values in present])
    assert page.credential is not None
    _apply_errors(page, services.validate_body(body, page.credential), row_of)


def _container(html_name: str, errors: list[str]) -> dict[str, Any]:
    return {"slug": builder.css_id(html_name), "input_id": f"id_{html_name}", "errors": errors}


@builder_action
def add_row(request: HttpRequest, page: Page) -> HttpResponse:
    """One new row (focus moves to it), the new TOTAL_FORMS and the add button, or the limit message."""
    module = page.module
    kept, added = _edit_rows(page, request.POST, add=True)
    try:
        total = int(request.POST.get(f"{builder.PREFIX}-TOTAL_FORMS", "0"))
    except ValueError:
        total = 0
    index = max([total, *(i + 1 for i, _ in kept)])
    count = len(kept)
    row = None
    if added:
        row = _new_row(page, index, count + 1)
        first = row.fields[0].bound.field.widget.attrs if row.fields else {}
        first["data-autofocus"] = ""
        count += 1
        index += 1
    page.rows = [row] if row else []
    context = page.context(
        request, row=row, at_cap=count >= module.MAX_PARTICIPANTS, total_forms=max(index, total)
    )
    return render(request, f"{TEMPLATE}#row_added", context)


@builder_action
def remove_row(request: HttpRequest, page: Page) -> HttpResponse:
    """htmx deletes the row itself; the answer re-enables the add button, moves focus to it and
    renumbers the rows left (1, 2, 3 — not 1, 3, 4)."""
    kept, _ = _edit_rows(page, request.POST, add=False)
    left = [index for index, _ in kept]
    page.rows = [Row(index=i, number=n, form=forms.Form(), fields=[]) for n, i in enumerate(left, 1)]
    context = page.context(request, at_cap=len(left) >= page.module.MAX_PARTICIPANTS, focus_add=True)
    return render(request, f"{TEMPLATE}#row_removed", context)


def _step2(request: HttpRequest, page: Page) -> HttpResponse:
    """The whole conversation form again, whichever part of it the button targeted."""
    response = _render(request, page, "step2")
    if request.htmx:
        retarget(response, "#step2")
        reswap(response, "innerHTML")
    return response


def _preview(request: HttpRequest, page: Page, body: dict[str, Any], row_of: list[int]) -> HttpResponse:
    assert page.credential is not None
    try:
        page.preview = services.preview_request(body, page.credential, key=page.idempotency_key)
    except services.ValidationFailed as exc:
        _apply_errors(page, exc.errors, row_of)
        return _step2(request, page)
    except services.CallFailed as exc:
        page.preview_error = str(exc)
    # A valid form: the summary and boxes of an earlier attempt go (htmx swaps only the preview).
    return _render(request, page, "preview" if request.htmx else None, summary_refresh=bool(request.htmx))


def _another(
    request: HttpRequest, page: Page, fields: dict[str, str], rows: list[dict[str, str]]
) -> HttpResponse:
    """ "Create another like this": the same fields (less those each conversation needs its own) under a
    fresh create key, so the next Create sends a new conversation."""
    page.idempotency_key = str(uuid.uuid4())
    page.notice = "A new conversation with the same fields: change what differs, then create." + (
        _clear_unique(page, fields)
    )
    rows = [values for values in rows if not builder.is_blank(values)]
    if not rows and page.has_participants:
        rows = [{}]
    _build_forms(page, fields, rows, bound=False)
    return _render(request, page, "step2")


def _submit(request: HttpRequest, page: Page, body: dict[str, Any], row_of: list[int]) -> HttpResponse:
    assert page.credential is not None
    if (
        "_confirm_empty" not in request.POST
        and not services.validate_body(body, page.credential)
        and services.is_empty(body, page.credential)
    ):
        page.confirm_empty = True  # allowed by the provider, but rarely meant: ask first, send nothing
        return _render(request, page, "step2")
    try:
        conversation = services.do_create_conversation(
            body,
            credential=page.credential,
            acting_user=request.user,
            idempotency_key=page.idempotency_key,
            ip=client_ip(request),
        )
    except services.KeyReused as exc:
        page.refused = exc.existing
        return _render(request, page, "step2")
    except services.ValidationFailed as exc:
        _apply_errors(page, exc.errors, row_of)
        return _render(request, page, "step2")
    if not request.htmx:
        if conversation.status == Status.CREATED:
            messages.success(request, f"Conversation created: {conversation.external_id}.")
        else:
            messages.error(
                request, f"{page.label} did not create the conversation: {conversation.error_message}"
            )
        return redirect("conversation_detail", conversation.pk)
    page.result = conversation
    new_key = None
    if conversation.status == Status.FAILED:
        # The key is spent on this failed attempt: a corrected form must be able to try again.
        page.idempotency_key = new_key = str(uuid.uuid4())
    # Only the outcome (and the form's error boxes, cleared): the fields on the page are what was sent, and
    # rendering every widget again would be most of the request's time.
    response = _render(request, page, "submitted", new_key=new_key, **_result_context(conversation))
    retarget(response, "#create-result")
    reswap(response, "innerHTML")
    return response


def _result_context(conversation: Conversation) -> dict[str, Any]:
    existing_id = conversation.existing_conversation_id
    existing = (
        Conversation.objects.filter(
            provider=conversation.provider, external_id=existing_id, status=Status.CREATED
        )
        .exclude(pk=conversation.pk)
        .first()
        if existing_id
        else None
    )
    return {
        "advice": services.failure_advice(conversation),
        "lookup": conversation.lookup or None,
        "existing_id": existing_id,
        "existing_record": existing,
    }


@role_required(CREATORS)
@require_safe
def create_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The new-conversation page's outcome panel for record ``pk``: polled while its create job runs."""
    conversation = get_object_or_404(Conversation.objects.select_related("credential"), pk=pk)
    page = _choose(conversation.provider, str(conversation.credential_id), enabled_only=False)
    page.result = conversation
    context = {"page": page, "form_url": page.url(), **_result_context(conversation)}
    if conversation.status == Status.FAILED:
        context["new_key"] = str(
            uuid.uuid4()
        )  # the failed attempt spent the form's key: a corrected form sends anew
    return render(request, f"{TEMPLATE}#result", context)


# --- saved templates ----------------------------------------------------------------------------


def _save_template(request: HttpRequest, page: Page, body: dict[str, Any]) -> HttpResponse:
    """ "Save as template": the body the form (or the JSON) would send, valid or not, never a secret."""
    try:
        template = drafts.do_save_template(
            request.POST.get("template_name", ""),
            provider=page.provider,
            credential=page.credential,
            body=body,
            shared=bool(request.POST.get("template_shared")),
            acting_user=request.user,
            ip=client_ip(request),
        )
    except drafts.TemplateRefused as exc:
        page.template_error = str(exc)
    else:
        who = "everyone who creates conversations" if template.shared else "you only"
        page.notice = f"Saved as template “{template.name}” (visible to {who})."
    return _step2(request, page)


# --- "Edit as JSON" -------------------------------------------------------------------------------


def _to_json(page: Page, body: dict[str, Any]) -> None:
    page.json_mode = True
    page.json_text = json.dumps(body, indent=2, ensure_ascii=False)


def _parse_json(text: str) -> tuple[dict[str, Any], str]:
    """The typed body and "" when it is a JSON object, else ``{}`` and what is wrong with it."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
    except RecursionError:
        return {}, "Not valid JSON: nested too deep."
    if not isinstance(body, dict):
        return {}, "The body must be a JSON object: { … }."
    return body, ""


def _leaves(value: Any, prefix: str = "") -> list[str]:
    """The dotted path of every filled-in value in ``value`` (list items by index)."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return [prefix] if prefix and value not in (None, "") else []
    return [leaf for key, item in items for leaf in _leaves(item, f"{prefix}.{key}" if prefix else str(key))]


def _unshown(
    page: Page, body: dict[str, Any], fields: dict[str, str], rows: list[dict[str, str]]
) -> list[str]:
    """The paths of ``body`` the form has no input for (``fields_from_body`` may return more keys than
    the form shows: those would be lost on the next post)."""
    module = page.module
    names = {spec.name for spec in module.BODY_FIELDS}
    row_names = {spec.name for spec in module.PARTICIPANT_FIELDS}
    shown_fields = {name: value for name, value in fields.items() if name in names}
    shown_rows = [{name: value for name, value in row.items() if name in row_names} for row in rows]
    shown = _leaves(module.body_from_fields(shown_fields, shown_rows))
    return [path for path in _leaves(body) if not any(path == s or path.startswith(f"{s}.") for s in shown)]


def _path_label(page: Page, path: str) -> str:
    """The form's label for an error path ("Participant 2, Address"), or "" where the form has none."""
    module = page.module
    labels = {spec.name: spec.label for spec in module.BODY_FIELDS}
    if path in labels:
        return labels[path]
    where = module.PARTICIPANTS_PATH
    if where and path.startswith(f"{where}."):
        position, _, sub = path[len(where) + 1 :].partition(".")
        if position.isdigit():
            row_labels = {spec.name: spec.label for spec in module.PARTICIPANT_FIELDS}
            number = f"Participant {int(position) + 1}"
            return f"{number}, {row_labels[sub]}" if sub in row_labels else number
    return ""


def _json_action(request: HttpRequest, page: Page, data: QueryDict) -> HttpResponse:
    """A button pressed in JSON mode: back to the form, save as template, preview, another, or create."""
    page.json_mode = True
    page.json_text = data.get("body_json", "")
    body, problem = _parse_json(page.json_text)
    if problem:
        page.json_errors = [("", "", [problem])]
        return _step2(request, page)
    if "_form_mode" in data:
        return _back_to_form(request, page, body)
    if "_save_template" in data:
        return _save_template(request, page, body)
    if "_another" in data:
        page.idempotency_key = str(uuid.uuid4())
        cleared = [key for key in page.module.NOT_DUPLICATED if body.pop(key, None) not in (None, "")]
        page.notice = "A new conversation with the same body: change what differs, then create." + (
            f" Cleared, as each conversation needs its own: {', '.join(cleared)}." if cleared else ""
        )
        _to_json(page, body)
        return _step2(request, page)
    if "_preview" in data:
        return _preview(request, page, body, [])
    return _submit(request, page, body, [])


def _back_to_form(request: HttpRequest, page: Page, body: dict[str, Any]) -> HttpResponse:
    """ "Back to the form": the JSON's values in the inputs; keys the form cannot show are named."""
    page.json_mode = False
    fields, rows = page.module.fields_from_body(body)
    hidden = _unshown(page, body, fields, rows)
    if not rows and page.has_participants:
        rows = [{}]
    _build_forms(page, fields, rows, bound=False)
    if hidden:
        page.notice = (
            f"The form cannot show {', '.join(hidden)}, so they were left out: the form will not send them. "
            "Only “Edit as JSON” can send them: switch back and add them there."
        )
    return _step2(request, page)


@builder_action
def validate_json(request: HttpRequest, page: Page) -> HttpResponse:
    """The JSON as typed, checked by the provider's rules: the list of errors by JSON path."""
    page.json_mode = True
    body, problem = _parse_json(request.POST.get("body_json", ""))
    if problem:
        page.json_errors = [("", "", [problem])]
    else:
        assert page.credential is not None
        _apply_errors(page, services.validate_body(body, page.credential), [])
    return render(request, f"{TEMPLATE}#json_errors", page.context(request, checked=True))
