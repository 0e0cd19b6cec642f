"""Read a bulk-create file (CSV or XLSX) and judge every row with the provider's own rules — the same
``validate`` the form and the command line use — before anything is saved or sent.

A file's columns are the provider's body fields by their names (``topic``, ``FriendlyName``) and its
participants as repeated columns ``participant1.<field>``, ``participant2.<field>``, … (:func:`columns`).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import providers
from convadmin.conversations.models import Conversation, Status
from convadmin.conversations.services.common import public_credential
from convadmin.credentials.models import Credential

MAX_BYTES = 10 * 1024 * 1024
MAX_ROWS = 10_000
#: Participant column groups in a downloaded template (a file may use up to the provider's maximum).
TEMPLATE_PARTICIPANTS = 3
FORMULA = (
    "This cell holds a formula; formulas are never run. Enter the value itself (or start it with ' in the "
    "spreadsheet)."
)


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


def participant_column(number: int, name: str) -> str:
    return f"participant{number}.{name}"


def columns(provider: str, participants: int | None = None) -> list[str]:
    """The columns of ``provider``'s file: body fields, then ``participants`` groups of participant fields
    (default: as many as the template shows, at most the provider's maximum)."""
    module = providers.get(provider)
    count = min(module.MAX_PARTICIPANTS, TEMPLATE_PARTICIPANTS if participants is None else participants)
    names = [spec.name for spec in module.BODY_FIELDS]
    for number in range(1, count + 1 if module.PARTICIPANT_FIELDS else 1):
        names += [participant_column(number, spec.name) for spec in module.PARTICIPANT_FIELDS]
    return names


def known_columns(provider: str) -> set[str]:
    return set(columns(provider, providers.get(provider).MAX_PARTICIPANTS))


def labels(provider: str) -> dict[str, str]:
    """Column → the label the form shows (``Participant 2, User ID``)."""
    module = providers.get(provider)
    out = {spec.name: spec.label for spec in module.BODY_FIELDS}
    for number in range(1, module.MAX_PARTICIPANTS + 1 if module.PARTICIPANT_FIELDS else 1):
        for spec in module.PARTICIPANT_FIELDS:
            out[participant_column(number, spec.name)] = f"Participant {number}, {spec.label}"
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


def check_header(header: list[str], provider: str) -> None:
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
    module = providers.get(provider)
    missing = [spec.name for spec in module.BODY_FIELDS if spec.required and spec.name not in header]
    if missing:
        raise FileRefused(f"Missing columns for {label}: {', '.join(missing)}. Use the {label} template.")


# --- judging ------------------------------------------------------------------------------------------


def _placement(base: str | None, path: str, groups: list[int]) -> str:
    """The column an error path lands on (``participants.0.user_id`` → ``participant1.user_id``)."""
    if base and path.startswith(base + "."):
        index, _, sub = path[len(base) + 1 :].partition(".")
        if index.isdigit() and int(index) < len(groups):
            number = groups[int(index)]
            return participant_column(number, sub) if sub else f"participant{number}"
    return path


def judge(
    provider: str, credential: Credential, header: list[str], table: Iterable[tuple[int, list[str]]]
) -> list[Row]:
    """Every row's body and problems, duplicates in the file and against created records flagged."""
    module = providers.get(provider)
    names = labels(provider)
    body_names = [spec.name for spec in module.BODY_FIELDS]
    sub_names = [spec.name for spec in module.PARTICIPANT_FIELDS]
    group_count = max(
        [
            int(name.split(".", 1)[0][len("participant") :])
            for name in header
            if name.startswith("participant")
        ]
        or [0]
    )
    public = public_credential(credential)
    result: list[Row] = []
    for line, cells in table:
        values = {name: (cells[i] if i < len(cells) else "") for i, name in enumerate(header)}
        row = Row(number=line, values=values)
        for name, value in values.items():
            if value.lstrip().startswith("="):
                row.errors.append(_error(names, name, FORMULA, value))
        fields = {name: values.get(name, "") for name in body_names}
        groups, participants = [], []
        for number in range(1, group_count + 1):
            group = {sub: values.get(participant_column(number, sub), "") for sub in sub_names}
            if any(value.strip() for value in group.values()):
                groups.append(number)
                participants.append(group)
        row.body = module.body_from_fields(fields, participants)
        if not row.errors:
            for error in module.validate(row.body, public):
                column = _placement(module.PARTICIPANTS_PATH, error.path, groups)
                row.errors.append(_error(names, column, error.message, values.get(column, "")))
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


def validate_file(name: str, data: bytes, credential: Credential) -> Report:
    """Read and judge a whole file; raises :class:`FileRefused` when the file itself is unusable."""
    if credential.disabled:
        raise FileRefused(f"The credential “{credential.label}” is disabled: choose another one.")
    header, table, blank = read_table(name, data)
    check_header(header, credential.provider)
    return Report(rows=judge(credential.provider, credential, header, table), blank_rows=blank)


def template_csv(provider: str) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(columns(provider))
    return out.getvalue()
