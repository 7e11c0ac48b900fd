"""What a reader does with rows it cannot use, and what it tells the run about them.

Published files are rarely clean: a CSV exported from a spreadsheet ends with hundreds of rows of
bare commas, one cell of a thousand breaks the file's own convention. A reader therefore skips blank
rows (and counts them), and for a bad row follows ``on_bad_row``: ``fail`` (the default) stops at
the first one with its file, line and cause; ``skip`` leaves it out, lists it with the same message
and reads on. ``limit`` stops reading once that many records are in hand, so ``--limit 2`` never
fails on row 300. What happened is kept in ``InputReport`` and stored with the run's stats
(``store.run_reports.add_run_stats``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from benchmarks.datasets.instructions import InputError
from benchmarks.datasets.limits import check_size

OnBadRow = Literal["fail", "skip"]
ON_BAD_ROW: tuple[OnBadRow, ...] = ("fail", "skip")
STORED_SKIPS = 200  # skipped rows listed in the run's stats (all are counted)
Row = TypeVar("Row")
Record = TypeVar("Record")


@dataclass
class InputReport:
    """A file as read: records kept, blank rows passed over, bad rows skipped (with their message),
    warnings about rows that were read but may not mean what the file meant."""

    path: str = ""
    on_bad_row: OnBadRow = "fail"
    limit: int | None = None
    records: int = 0
    blank: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts about the data (e.g. no gold locations)

    def __post_init__(self) -> None:
        if self.on_bad_row not in ON_BAD_ROW:
            raise InputError(f"--on-bad-row {self.on_bad_row!r}: choose {' or '.join(ON_BAD_ROW)}")
        if self.limit is not None and self.limit < 1:
            raise InputError("--limit must be at least 1")

    def full(self, kept: int) -> bool:
        """Whether ``kept`` records already reach the limit (read no further)."""
        return self.limit is not None and kept >= self.limit

    def bad(self, exc: InputError) -> None:
        """A row that cannot be used: raise (``fail``) or list it and go on (``skip``)."""
        if self.on_bad_row == "fail":
            raise exc
        self.skipped.append(str(exc))

    def collect(self, rows: Iterable[tuple[int, Row]], make: Callable[[int, Row], Record],
                ids: UniqueIds | None = None) -> list[Record]:
        """The loop of every reader: ``make(line, row)`` of each row until the limit. A row whose
        ``make`` raises ``InputError``, or whose id ``ids`` has seen already, is bad (``bad``);
        the records are then counted (``finish``)."""
        records: list[Record] = []
        for line, row in rows:
            try:
                record = make(line, row)
                if ids is not None:
                    ids.check(record, line)
            except InputError as exc:
                self.bad(exc)
                continue
            records.append(record)
            if self.full(len(records)):
                break
        return self.finish(records)

    def finish(self, records: list) -> list:
        """The records read, counted; an error naming the file when none is left (a file of blank
        rows, or every row skipped)."""
        self.records = len(records)
        if not records:
            why = (f"; {len(self.skipped)} rows skipped, first: {self.skipped[0]}" if self.skipped
                   else f" ({self.blank} blank rows)" if self.blank else " (the file is empty)")
            raise InputError(f"{self.path}: no records{why}")
        return records

    def stats(self) -> dict[str, Any]:
        """What is stored with the run (``input`` in its stats)."""
        return {"file": self.path, "records": self.records, "blank_rows": self.blank,
                "skipped_rows": len(self.skipped), "skipped": self.skipped[:STORED_SKIPS],
                "on_bad_row": self.on_bad_row, "limit": self.limit, "warnings": self.warnings, "notes": self.notes}

    def lines(self) -> list[str]:
        """What a command prints after reading (nothing for a clean file)."""
        out = [f"{self.path}: {self.blank} blank rows passed over"] if self.blank else []
        if self.skipped:
            out.append(f"{self.path}: {len(self.skipped)} bad rows skipped (--on-bad-row skip):")
            out += [f"  {s}" for s in self.skipped]
        out += [f"warning: {w}" for w in self.warnings]
        out += self.notes
        return out


def blank_cells(cells: list[str]) -> bool:
    """A row of bare separators (``,,,,``) or whitespace: no data, not an error."""
    return all(not c.strip() for c in cells)


def decode_utf8(path: Path, raw: bytes) -> str:
    """The file's text (a UTF-8 byte-order mark dropped), or an error naming the line and column of
    the first byte that is not UTF-8, and saying so when the file reads as GBK/GB18030 (Chinese
    files saved by Excel or older Windows tools)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        line = raw.count(b"\n", 0, exc.start) + 1
        hint = ""
        if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = "; the file is UTF-16 (it starts with a UTF-16 byte-order mark): save it as UTF-8"
        else:
            try:
                raw.decode("gb18030")
                hint = "; the file reads as GBK/GB18030: convert it with `iconv -f GB18030 -t UTF-8`"
            except UnicodeDecodeError:
                pass
        raise InputError(f"{path}:{line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                         f"{exc.start - line_start + 1}){hint}") from None


def read_csv_rows(path: Path, report: InputReport) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header, and (first physical line, row) pairs read lazily: blank rows (bare commas) are
    counted and passed over, a row of the wrong shape, with a NUL character or over the size limits
    goes to ``report.bad``. Encoding problems name their line: they concern the whole file."""
    if not path.exists():
        raise InputError(f"{path}: file does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a CSV file")
    content = decode_utf8(path, path.read_bytes())
    reader = csv.reader(io.StringIO(content, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise InputError(f"{path}:1: not a readable CSV file: {exc}") from None
    if not header or blank_cells(header):
        raise InputError(f"{path}: no records (the file is empty)")
    header = [h.strip() for h in header]
    dupes = sorted({h for h in header if h and header.count(h) > 1})
    if dupes:
        raise InputError(f"{path}:1: columns {dupes} appear more than once in the header")

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        start = reader.line_num + 1
        try:
            for cells in reader:
                line, start = start, reader.line_num + 1
                if blank_cells(cells):
                    report.blank += 1
                    continue
                try:
                    yield line, _csv_row(path, line, header, cells)
                except InputError as exc:
                    report.bad(exc)
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: not a readable CSV file: {exc}") from None

    return header, rows()


def _csv_row(path: Path, line: int, header: list[str], cells: list[str]) -> dict[str, str]:
    # trailing empty cells past the header (a spreadsheet's stray commas) carry nothing
    while len(cells) > len(header) and not cells[-1].strip():
        cells = cells[:-1]
    if len(cells) != len(header):
        raise InputError(f"{path}:{line}: expected {len(header)} fields as in the header, got {len(cells)}")
    for name, cell in zip(header, cells, strict=True):
        if "\x00" in cell:
            raise InputError(f"{path}:{line}: field '{name}': contains a NUL character (\\u0000)")
    try:
        check_size(f"{path}:{line}", sum(len(c.encode("utf-8")) for c in cells), cells)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return dict(zip(header, cells, strict=True))


class UniqueIds:
    """Results are joined to items by id, so two items with one id would silently share a score:
    a repeated id is a bad row (the first one stays)."""

    def __init__(self, path: Path, id_field: str) -> None:
        self.path, self.id_field, self.first = path, id_field, {}

    def check(self, item: Any, line: int) -> None:
        if item.id in self.first:
            raise InputError(f"{self.path}:{line}: field '{self.id_field}': duplicate id {item.id!r} "
                             f"(first at line {self.first[item.id]})")
        self.first[item.id] = line


def file_kind(path: Path) -> str:
    """"jsonl" or "csv", by extension, else by the first character of the file."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix == ".csv" or not path.is_file():
        return "csv"
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return "jsonl" if head.startswith(b"{") else "csv"
