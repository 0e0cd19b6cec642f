"""Read a bulk-create file (CSV or XLSX) and judge every row with the provider's own rules — the same
``validate`` the form and the command line use — before anything is saved or sent.

A file's columns are the provider's body fields by their names (``topic``, ``FriendlyName``) and its
participants, either as repeated columns ``participant1.<field>``, ``participant2.<field>``, … (:func:`columns`)
or as one column ``participants`` holding a JSON array of objects keyed by those field names (never both).
A saved template may give the defaults: its values fill a row's blank cells (:class:`Defaults`).
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import providers
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.services.common import public_credential
from convadmin.credentials.models import Credential
from providers.base import FieldError

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 10_000
#: Participant column groups in a downloaded template (a file may use up to the provider's maximum).
TEMPLATE_PARTICIPANTS = 3
FORMULA = (
    "This cell holds a formula; formulas are never run. Enter the value itself (or start it with ' in the "
    "spreadsheet)."
)
#: The one column that may hold every participant as a JSON array instead of ``participantN.*`` columns.
JSON_COLUMN = "participants"
JSON_LABEL = "Participants (JSON)"
FROM_TEMPLATE = " (from the template)"
GROUP = re.compile(r"^participant(\d+)\.")


class FileRefused(Exception):
    """The file as a whole cannot be used (size, encoding, columns, rows): nothing is saved or sent."""


@dataclass
class Row:
    number: int  # the line in the file; the header is line 1
    values: dict[str, str]
    body: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)
    natural_key: str = ""
    key: uuid.UUID = field(default_factory=uuid.uuid4)
    duplicate: bool = False

    @property
    def status(self) -> str:
        return (
            "invalid" if self.errors and not self.duplicate else ("duplicate" if self.duplicate else "ready")
        )


@dataclass
class Report:
    rows: list[Row]
    blank_rows: int = 0

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def ready(self) -> list[Row]:
        return [row for row in self.rows if row.status == "ready"]

    def summary(self) -> str:
        ready, problems = len(self.ready), len(self.rows) - len(self.ready)
        text = f"{ready:,} ready, {problems:,} with errors"
        return text + (f" ({self.blank_rows:,} empty rows skipped)" if self.blank_rows else "")


@dataclass
class Defaults:
    """A saved template's values for a file's blank cells: ``fields`` fill each blank (or missing) body column,
    ``participants`` stand in for a row that gives no participant at all (see :func:`judge`)."""

    name: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    participants: list[dict[str, str]] = field(default_factory=list)


def defaults_from(provider: str, name: str, body: dict[str, Any]) -> Defaults:
    """The defaults a template's saved body gives: the form's fields (as "Start from template" fills them),
    less the ones no two conversations may share (``NOT_DUPLICATED``) and blank participant rows."""
    module = providers.get(provider)
    fields, rows = module.fields_from_body(body)
    kept = {
        spec.name: fields[spec.name]
        for spec in module.BODY_FIELDS
        if spec.name not in module.NOT_DUPLICATED and str(fields.get(spec.name, "")).strip()
    }
    subs = [spec.name for spec in module.PARTICIPANT_FIELDS]
    people = [{sub: str(row.get(sub, "")) for sub in subs} for row in rows]
    people = [row for row in people if any(value.strip() for value in row.values())]
    return Defaults(name, kept, people[: module.MAX_PARTICIPANTS])


def template_defaults(template: Any, provider: str) -> Defaults:
    """A saved template (``drafts.ConversationTemplate``) as a ``provider`` file's defaults; raises
    :class:`FileRefused` when it is another provider's."""
    if template.provider != provider:
        label = providers.NAMES[provider]
        raise FileRefused(
            f"“{template.name}” is a {template.provider_label} template, but the credential is {label}: "
            f"choose a {label} template or none."
        )
    return defaults_from(provider, template.name, template.body)


def participant_column(number: int, name: str) -> str:
    return f"participant{number}.{name}"


def columns(provider: str, participants: int | None = None, *, as_json: bool = False) -> list[str]:
    """The columns of ``provider``'s file: body fields, then ``participants`` groups of participant fields
    (default: as many as the template shows, at most the provider's maximum), or with ``as_json`` the one
    JSON column."""
    module = providers.get(provider)
    count = min(module.MAX_PARTICIPANTS, TEMPLATE_PARTICIPANTS if participants is None else participants)
    names = [spec.name for spec in module.BODY_FIELDS]
    if as_json and module.PARTICIPANT_FIELDS:
        return [*names, JSON_COLUMN]
    for number in range(1, count + 1 if module.PARTICIPANT_FIELDS else 1):
        names += [participant_column(number, spec.name) for spec in module.PARTICIPANT_FIELDS]
    return names


def known_columns(provider: str) -> set[str]:
    return set(columns(provider, providers.get(provider).MAX_PARTICIPANTS)) | set(
        columns(provider, as_json=True)
    )


def labels(provider: str) -> dict[str, str]:
    """Column → the label the form shows (``Participant 2, User ID``)."""
    module = providers.get(provider)
    out = {spec.name: spec.label for spec in module.BODY_FIELDS}
    for number in range(1, module.MAX_PARTICIPANTS + 1 if module.PARTICIPANT_FIELDS else 1):
        for spec in module.PARTICIPANT_FIELDS:
            out[participant_column(number, spec.name)] = f"Participant {number}, {spec.label}"
    if module.PARTICIPANT_FIELDS:
        out[JSON_COLUMN] = JSON_LABEL
    return out


# --- reading --------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _csv_table(data: bytes) -> Iterator[list[str]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRefused(
            f"The file is not UTF-8 text (invalid byte at offset {exc.start}). Save it as “CSV UTF-8” and "
            "upload it again."
        ) from None
    if "\x00" in text:
        raise FileRefused("The file holds NUL characters: it is not a CSV text file.")
    try:
        yield from csv.reader(io.StringIO(text, newline=""))
    except csv.Error as exc:
        raise FileRefused(f"The file is not readable CSV: {exc}.") from None


def _xlsx_table(data: bytes) -> Iterator[list[str]]:
    from openpyxl import load_workbook

    try:
        # data_only=False: a formula cell comes back as its formula text ("=…"), never as a computed value.
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:  # openpyxl raises many kinds for a file that is not a workbook
        raise FileRefused("The file is not a readable Excel workbook (.xlsx).") from None
    try:
        for row in book.worksheets[0].iter_rows(values_only=True):
            yield [_text(value) for value in row]
    finally:
        book.close()


def read_table(name: str, data: bytes) -> tuple[list[str], list[tuple[int, list[str]]], int]:
    """``(header, [(line, cells)], blank rows)`` of a CSV or XLSX file; raises :class:`FileRefused`."""
    if len(data) > MAX_BYTES:
        raise FileRefused(f"The file is larger than {MAX_BYTES // 1048576} MB, the most a bulk create takes.")
    if not data.strip():
        raise FileRefused("The file is empty: download the template, fill it and upload it.")
    table = _xlsx_table(data) if name.lower().endswith(".xlsx") else _csv_table(data)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    blank = 0
    for line, cells in enumerate(table, 1):
        if header is None:
            header = [cell.strip() for cell in cells]
            while header and not header[-1]:
                header.pop()
            continue
        if not any(cell.strip() for cell in cells):
            blank += 1
            continue
        rows.append((line, cells))
        if len(rows) > MAX_ROWS:
            raise FileRefused(f"The file has more than {MAX_ROWS:,} rows, the most one bulk create takes.")
    if not header:
        raise FileRefused("The file has no header row: download the template and keep its first row.")
    if not rows:
        raise FileRefused("The file has no rows to create: fill at least one row under the header.")
    return header, rows, blank


def check_header(header: list[str], provider: str, defaults: Defaults | None = None) -> None:
    """Refuse a header the provider cannot use (a required column may be left out when ``defaults`` fill it)."""
    label = providers.NAMES[provider]
    known = known_columns(provider)
    seen: set[str] = set()
    repeated = sorted({name for name in header if name in seen or seen.add(name)})
    if repeated:
        raise FileRefused(f"These columns appear twice: {', '.join(repeated)}.")
    if "" in header:
        raise FileRefused("A column has no name in the header row: name it or delete the column.")
    unknown = [name for name in header if name not in known]
    if unknown:
        for other, other_label in providers.NAMES.items():
            if other != provider and set(header) <= known_columns(other):
                raise FileRefused(
                    f"This is a {other_label} file, but you chose {label}: choose {other_label} and one of "
                    f"its credentials, or download the {label} template."
                )
        raise FileRefused(
            f"Unknown columns for {label}: {', '.join(unknown[:10])}. Use the columns of the {label} template."
        )
    groups = [name for name in header if GROUP.match(name)]
    if JSON_COLUMN in header and groups:
        raise FileRefused(
            f"The file gives participants twice: a “{JSON_COLUMN}” JSON column and {groups[0]} columns. "
            "Keep one of the two."
        )
    module = providers.get(provider)
    given = set(header) | set(defaults.fields if defaults else ())
    missing = [spec.name for spec in module.BODY_FIELDS if spec.required and spec.name not in given]
    if missing:
        raise FileRefused(f"Missing columns for {label}: {', '.join(missing)}. Use the {label} template.")


# --- judging ------------------------------------------------------------------------------------------


def _placed(
    module: Any,
    names: dict[str, str],
    error: FieldError,
    used: dict[str, str],
    filled: dict[str, str],
    people: list[dict[str, str]],
    places: list[tuple[str, int]],
) -> dict[str, str]:
    """A provider's error at its column, with the value used (``participants.0.user_id`` lands on
    ``participant1.user_id``, or the JSON column; a template's value: the label says so)."""
    path, base = error.path, module.PARTICIPANTS_PATH
    column, value, marked = path, used.get(path, ""), path in filled
    if base and path.startswith(base + "."):
        index, _, sub = path[len(base) + 1 :].partition(".")
        if index.isdigit() and int(index) < len(places):
            source, number = places[int(index)]
            column = participant_column(number, sub) if sub else f"participant{number}"
            value, marked = people[int(index)].get(sub, ""), source == "template"
            if source == JSON_COLUMN:
                label = f"{JSON_LABEL}: {names.get(column, column)}"
                return _error(names, JSON_COLUMN, error.message, value) | {"label": label}
    placed = _error(names, column, error.message, value)
    return placed | {"label": placed["label"] + FROM_TEMPLATE} if marked else placed


def _flat(item: dict[str, Any], names: set[str], prefix: str = "") -> tuple[dict[str, str], list[str]]:
    """A JSON participant's values by field name (``{"messaging_binding": {"address": …}}`` is followed to
    ``messaging_binding.address``; a value that is not text is kept as JSON text) and its unknown keys."""
    flat: dict[str, str] = {}
    unknown: list[str] = []
    for key, value in item.items():
        name = prefix + key
        if name in names:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            flat[name] = "" if value is None else text
        elif isinstance(value, dict) and any(other.startswith(name + ".") for other in names):
            inner, more = _flat(value, names, name + ".")
            flat.update(inner)
            unknown += more
        else:
            unknown.append(name)
    return flat, unknown


def json_participants(module: Any, text: str) -> tuple[list[dict[str, str]] | None, list[str]]:
    """The participants of a JSON column's cell (``None`` when it is blank) and its problems."""
    if not text.strip():
        return None, []
    subs = [spec.name for spec in module.PARTICIPANT_FIELDS]
    shape = f'an array of objects like [{{"{subs[0]}": "…"}}, …]'
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        return [], [f"Not valid JSON ({exc.msg} at character {exc.pos + 1}): write {shape}."]
    except RecursionError:
        return [], [f"The JSON is nested too deeply: write {shape}."]
    if not isinstance(items, list):
        return [], [f"Not a JSON array: write {shape}."]
    if len(items) > module.MAX_PARTICIPANTS:
        return [], [f"{len(items):,} participants: {module.LABEL} takes at most {module.MAX_PARTICIPANTS:,}."]
    people, problems = [], []
    for number, item in enumerate(items, 1):
        if not isinstance(item, dict):
            problems.append(f"Participant {number} is not a JSON object: write {shape}.")
            continue
        flat, unknown = _flat(item, set(subs))
        if unknown:
            problems.append(
                f"Participant {number} has unknown keys: {', '.join(unknown)}. The keys are {', '.join(subs)}."
            )
        if any(value.strip() for value in flat.values()):  # as a blank participantN group: left out
            people.append({sub: flat.get(sub, "") for sub in subs})
    return people, problems


def judge(
    provider: str,
    credential: Credential,
    header: list[str],
    table: Iterable[tuple[int, list[str]]],
    defaults: Defaults | None = None,
) -> list[Row]:
    """Every row's body and problems, duplicates in the file and against created records flagged.

    With ``defaults`` (a saved template), a blank or missing body cell takes the template's value, and a row
    that gives no participant at all (no ``participantN.*`` cell filled, or a blank JSON cell; ``[]`` means
    none) takes the template's participants; a value in the file always wins. The merged row is judged."""
    module = providers.get(provider)
    defaults = defaults or Defaults()
    names = labels(provider)
    body_names = [spec.name for spec in module.BODY_FIELDS]
    sub_names = [spec.name for spec in module.PARTICIPANT_FIELDS]
    numbers = sorted({int(match.group(1)) for name in header if (match := GROUP.match(name))})
    public = public_credential(credential)
    result: list[Row] = []
    for line, cells in table:
        values = {name: (cells[i] if i < len(cells) else "") for i, name in enumerate(header)}
        row = Row(number=line, values=values)
        for name, value in values.items():
            if value.lstrip().startswith("="):
                row.errors.append(_error(names, name, FORMULA, value))
        filled = {name: value for name, value in defaults.fields.items() if not values.get(name, "").strip()}
        used = values | filled
        fields = {name: used.get(name, "") for name in body_names}
        people: list[dict[str, str]] | None = None
        places: list[tuple[str, int]] = []
        if JSON_COLUMN in values:
            people, problems = json_participants(module, values[JSON_COLUMN])
            row.errors += [_error(names, JSON_COLUMN, problem, values[JSON_COLUMN]) for problem in problems]
            places = [(JSON_COLUMN, number) for number in range(1, len(people or []) + 1)]
        else:
            given = []
            for number in numbers:
                group = {sub: values.get(participant_column(number, sub), "") for sub in sub_names}
                if any(value.strip() for value in group.values()):
                    places.append(("columns", number))
                    given.append(group)
            people = given or None
        if people is None:
            people = defaults.participants
            places = [("template", number) for number in range(1, len(people) + 1)]
        row.body = module.body_from_fields(fields, people)
        if not row.errors:
            for error in module.validate(row.body, public):
                row.errors.append(_placed(module, names, error, used, filled, people, places))
        if not row.errors and module.NATURAL_KEY:
            prepared = module.prepare(row.body, public, key=str(row.key))
            value = prepared.get(module.NATURAL_KEY)
            row.natural_key = value if isinstance(value, str) else ""
        result.append(row)
    _flag_duplicates(provider, credential, result)
    return result


def _error(names: dict[str, str], column: str, message: str, value: str) -> dict[str, str]:
    return {"column": column, "label": names.get(column, column), "message": message, "value": value}


def _flag_duplicates(provider: str, credential: Credential, rows: list[Row]) -> None:
    module = providers.get(provider)
    key_name = module.NATURAL_KEY
    label = next((spec.label for spec in module.BODY_FIELDS if spec.name == key_name), key_name)
    first: dict[str, int] = {}
    for row in rows:
        if not row.natural_key:
            continue
        if row.natural_key in first:
            row.duplicate = True
            row.errors.append(
                {
                    "column": key_name,
                    "label": label,
                    "message": f"Row {first[row.natural_key]} creates the same conversation ({label}).",
                    "value": row.natural_key,
                }
            )
        else:
            first[row.natural_key] = row.number
    keys = list(first)
    existing: dict[str, int] = {}
    for start in range(0, len(keys), 2000):  # one query per 2,000 keys (SQLite's parameter limit)
        existing.update(
            Conversation.objects.filter(credential=credential, status__in=[Status.CREATED, Status.PENDING])
            .filter(**{f"request_body__{key_name}__in": keys[start : start + 2000]})
            .values_list(f"request_body__{key_name}", "pk")
        )
    for row in rows:
        if row.natural_key in existing and not row.duplicate:
            row.duplicate = True
            row.errors.append(
                {
                    "column": key_name,
                    "label": label,
                    "message": f"Record {existing[row.natural_key]} already has this {label}.",
                    "value": row.natural_key,
                }
            )


def validate_file(name: str, data: bytes, credential: Credential, defaults: Defaults | None = None) -> Report:
    """Read and judge a whole file (blank cells from ``defaults``: see :func:`judge`); raises
    :class:`FileRefused` when the file itself is unusable."""
    if credential.disabled:
        raise FileRefused(f"The credential “{credential.label}” is disabled: choose another one.")
    header, table, blank = read_table(name, data)
    check_header(header, credential.provider, defaults)
    return Report(rows=judge(credential.provider, credential, header, table, defaults), blank_rows=blank)


def template_table(
    provider: str, *, as_json: bool = False, defaults: Defaults | None = None
) -> list[list[str]]:
    """A template file's rows: the header (participants as repeated columns, or ``as_json`` the one JSON
    column) and, from a saved template's ``defaults``, a first example row of its values (a value starting with
    ``=`` is left out: a spreadsheet would run it)."""
    people = defaults.participants if defaults else []
    header = columns(provider, max(TEMPLATE_PARTICIPANTS, len(people)), as_json=as_json)
    if defaults is None:
        return [header]
    example = dict(defaults.fields)
    if JSON_COLUMN in header and people:
        given = [{sub: value for sub, value in person.items() if value} for person in people]
        example[JSON_COLUMN] = json.dumps(given, ensure_ascii=False)
    for number, person in enumerate(people, 1):
        example.update({participant_column(number, sub): value for sub, value in person.items()})
    cells = [example.get(name, "") for name in header]
    return [header, ["" if cell.lstrip().startswith("=") else cell for cell in cells]]


def template_file(provider: str, fmt: str, **options: Any) -> bytes:
    """:func:`template_table` as a CSV (UTF-8) or ``xlsx`` file."""
    table = template_table(provider, **options)
    if fmt != "xlsx":
        out = io.StringIO()
        csv.writer(out).writerows(table)
        return out.getvalue().encode()
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook()
    book.active.title = providers.NAMES[provider][:31]
    for cells in table:
        book.active.append([ILLEGAL_CHARACTERS_RE.sub("", cell) for cell in cells])
    data = io.BytesIO()
    book.save(data)
    return data.getvalue()
