"""Tables of labelled texts: CSV, TSV, JSON Lines and Parquet files -> a text and a label column.

Which columns: `data.text_column` and `data.label_column`, or when null the first present of
review/text and of sentiment/label (Kaggle's "IMDB Dataset.csv" and Hugging Face's layout both
work unnamed). Labels come back as stripped strings ("" for an empty cell); turning them into
ids is `imdb_rnn.data.labels`' job.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from imdb_rnn.errors import UserError, one_line

if TYPE_CHECKING:
    import pandas as pd

# File name ending -> format. JSON Lines: one JSON object per line.
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
KIND = {"csv": "CSV", "tsv": "TSV", "jsonl": "JSONL", "parquet": "Parquet file"}
TEXT_COLUMNS = ("review", "text")  # tried in this order when data.text_column is null
LABEL_COLUMNS = ("sentiment", "label")


def table_format(path: Path) -> Optional[str]:
    """"csv", "tsv", "jsonl" or "parquet" by the file name's ending, else None."""
    return TABLE_FORMATS.get(Path(path).suffix.lower())


@dataclass
class Table:
    """A table's text and label columns, row by row."""

    path: Path
    format: str
    text_column: str
    label_column: str
    texts: list[str]
    labels: list[str]  # stripped; "" for an empty or null cell
    # The label column's class names where the file declares them (a Hugging Face ClassLabel).
    class_names: Optional[list[str]] = None
    # Each row's line number in the file (blank lines are skipped): JSON Lines when read, CSV and
    # TSV when a message first needs one.
    line_numbers: list[int] = field(default_factory=list, repr=False)

    def where(self, i: int) -> str:
        """Row i as the user finds it: the line of the file where it starts (CSV, TSV, JSONL),
        or a Parquet row counting from 1."""
        kind = f"{KIND[self.format]} {self.path}"
        if self.format == "parquet":
            return f"{kind} row {i + 1} (counting from 1)"
        if self.format in ("csv", "tsv") and not self.line_numbers:
            self.line_numbers = record_lines(self.path, "\t" if self.format == "tsv" else ",")
        if i < len(self.line_numbers):
            return f"{kind} line {self.line_numbers[i]}"
        return f"{kind} row {i + 1} (counting from 1, the header aside)"

    def __len__(self) -> int:
        return len(self.texts)


def utf8_error_line(data: bytes) -> Optional[int]:
    """The 1-based line of the first byte of `data` that is not valid UTF-8, or None if all are."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        return data.count(b"\n", 0, e.start) + 1
    return None


def read_utf8(path: Path, what: str) -> str:
    """The text of the file at `path`, decoded as UTF-8 (a byte order mark dropped).

    Raises UserError naming `what` (e.g. "JSONL", "input file") and `path`: unreadable, or not
    valid UTF-8 (with the line of the first bad byte).
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}; check that it is a readable file") from e
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not valid UTF-8 (line {utf8_error_line(data)}); re-save it as UTF-8") from e


def record_lines(path: Path, sep: str = ",") -> list[int]:
    """The line of the file where each row of a CSV (`sep="\\t"`: a TSV, unquoted) starts, the
    header aside, skipping blank lines as `read_csv` does: a quoted review may span lines, so a
    row's line is not its index plus 2. Read again only for a message; [] when it cannot be."""
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    lines: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, delimiter=sep, quoting=quoting)
            start = 1
            for record in reader:
                if len(record) > 1 or (record and record[0].strip()):
                    lines.append(start)
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return lines[1:]


def read_csv(path: Path, nrows: Optional[int] = None, sep: str = ",") -> "pd.DataFrame":
    """A UTF-8 CSV (`sep="\\t"`: a TSV, unquoted) with every cell a string (empty cells stay "",
    never NaN), the first `nrows` rows.

    Raises UserError, naming the file (and the line, where the decoder or the parser says which),
    for a file that cannot be read, is not valid UTF-8, is empty, or does not parse.
    """
    import pandas as pd

    kind, what = ("TSV", "a tab-separated file (one row per line)") if sep == "\t" else \
        ("CSV", "a comma-separated file and that every quote is closed")
    # A TSV has no quoting: a review may hold a lone quote character.
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    try:
        return pd.read_csv(path, nrows=nrows, sep=sep, quoting=quoting, dtype=str, keep_default_na=False,
                           encoding="utf-8")
    except UnicodeDecodeError as e:
        # pandas decodes in chunks, so the error's offset is not a position in the file: find it
        # again in the file's bytes (on this error path only).
        line = utf8_error_line(path.read_bytes())
        where = f" (line {line})" if line else ""
        raise UserError(f"{kind} {path} is not valid UTF-8{where}; re-save it as UTF-8") from e
    except pd.errors.EmptyDataError as e:
        raise UserError(f"{kind} {path} is empty; it needs a header line naming its columns, then one row per review") from e
    except pd.errors.ParserError as e:
        raise UserError(f"{kind} {path} cannot be parsed ({str(e).splitlines()[0]}); check that it is {what}") from e
    except OSError as e:
        raise UserError(f"cannot read {kind} {path}: {e.strerror or e}; check that it is a readable file") from e


def _label_text(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):  # null, NaN
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():  # 1.0: an integer column that held a null
        return str(int(value))
    return str(value).strip()


def _refuse_nested(values: list[Any], column: str, what: str, where: Callable[[int], str]) -> None:
    """Raise UserError naming the first row (`where(i)`) whose cell is a list or an object (JSON, a
    Parquet list or struct column): its string form is not a review or a class name."""
    for i, value in enumerate(values):
        if isinstance(value, (list, tuple, dict)):
            kind, fix = ("a list", "join its parts first") if isinstance(value, (list, tuple)) else \
                ("an object", "not an object of fields")
            raise UserError(f"{where(i)}: the {what} column '{column}' holds {kind}, not a string; write each "
                            f"{'review' if what == 'text' else 'label'} as one string or number ({fix})")


def _texts(values: list[Any], column: str, where: Callable[[int], str]) -> list[str]:
    """The text cells as strings: null is "", a number its digits; a list or an object raises
    UserError naming the row (`where(i)`)."""
    _refuse_nested(values, column, "text", where)
    return ["" if value is None else value if isinstance(value, str) else str(value) for value in values]


def _labels(values: list[Any], column: str, where: Callable[[int], str]) -> list[str]:
    """The label cells as stripped strings ("" for null); a list or an object raises UserError."""
    _refuse_nested(values, column, "label", where)
    return [_label_text(v) for v in values]


def _header(path: Path, sep: str) -> list[str]:
    """A CSV's (TSV's) header as written: pandas renames a repeated name ("text", "text.1")."""
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    with open(path, encoding="utf-8-sig", newline="") as f:
        return next(csv.reader(f, delimiter=sep, quoting=quoting), [])


def _choose(columns: list[str], given: Optional[str], defaults: tuple[str, ...], key: str, what: str,
            kind: str) -> str:
    if given is not None:
        if given not in columns:
            raise UserError(f"{kind} lacks column '{given}' (data.{key}; has: {', '.join(columns)}); set data.{key} "
                            "to one of its columns")
        return given
    for name in defaults:
        if name in columns:
            return name
    raise UserError(f"{kind} has no {what} column (has: {', '.join(columns)}); name it {' or '.join(defaults)}, "
                    f"or set data.{key}")


def _columns(columns: list[str], text_column: Optional[str], label_column: Optional[str], kind: str) -> tuple[str, str]:
    text = _choose(columns, text_column, TEXT_COLUMNS, "text_column", "text", kind)
    label = _choose(columns, label_column, LABEL_COLUMNS, "label_column", "label", kind)
    if text == label:
        raise UserError(f"{kind}: data.text_column and data.label_column are both '{text}'; name two columns")
    return text, label


def _read_delimited(path: Path, fmt: str, text_column: Optional[str], label_column: Optional[str],
                    limit: Optional[int]) -> Table:
    sep = "\t" if fmt == "tsv" else ","
    df = read_csv(path, nrows=limit, sep=sep)
    text, label = _columns([str(c) for c in df.columns], text_column, label_column, f"{KIND[fmt]} {path}")
    header = _header(path, sep)
    for name in (text, label):
        if header.count(name) > 1:
            raise UserError(f"{KIND[fmt]} {path} has {header.count(name)} columns named '{name}' (header line); give "
                            "each column its own name")
    table = Table(path, fmt, text, label, df[text].tolist(), [v.strip() for v in df[label].tolist()])
    _refuse_repeated_header(table.texts, text, table.where, table.labels, label)
    return table


def _is_name(cell: str, name: str) -> bool:
    return cell.lstrip("\ufeff").strip().lower() == name.lower()


def _refuse_repeated_header(texts: list[str], text: str, where: Callable[[int], str],
                            labels: Optional[list[str]] = None, label: str = "") -> None:
    """Raise UserError naming the first row that repeats the header (files joined with cat, each
    perhaps with a byte order mark): it would become a review, and its label cell a class."""
    for i, t in enumerate(texts):
        if _is_name(t, text) and (labels is None or _is_name(labels[i], label)):
            raise UserError(f"{where(i)} repeats the header ('{t.strip()}'); keep the header on the first line alone "
                            "(were several files joined?)")


def read_text_column(path: Path, text_column: Optional[str] = None) -> tuple[list[str], Optional[list[str]]]:
    """A table's columns, and the cells of its text column as strings (`text_column`, else the
    first of review, text present; None when it has none): what predict reads from a CSV, TSV,
    JSONL or Parquet file, which needs no label column. Raises UserError naming the file when it
    cannot be read, and the row of a text that is a list or an object."""
    fmt = table_format(path)
    kind = f"{KIND[fmt]} {path}"
    names = (text_column,) if text_column else TEXT_COLUMNS
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            columns = list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowException, OSError) as e:
            raise UserError(f"{kind} cannot be read ({one_line(e)}); check that it is a complete Parquet file") from e
        name = next((c for c in names if c in columns), None)
        values = list(read_parquet_column(path, name)) if name else None
        where = lambda i: f"{kind} row {i + 1} (counting from 1)"  # noqa: E731
    elif fmt == "jsonl":
        rows, lines, seen = _jsonl_rows(path, None)
        columns = list(seen)
        name = next((c for c in names if c in columns), None)
        missing = next((n for r, n in zip(rows, lines) if name and name not in r), None)
        if missing is not None:
            raise UserError(f"{kind} line {missing} has no key '{name}'; give every line the key '{name}'")
        values = [r[name] for r in rows] if name else None
        where = lambda i: f"{kind} line {lines[i]}"  # noqa: E731
    else:
        df = read_csv(path, sep="\t" if fmt == "tsv" else ",")
        columns = [str(c) for c in df.columns]
        name = next((c for c in names if c in columns), None)
        if name is None:
            return columns, None
        table = Table(path, fmt, name, "", df[name].tolist(), [])
        _refuse_repeated_header(table.texts, name, table.where)
        return columns, table.texts
    return columns, _texts(values, name, where) if name else None


def _jsonl_rows(path: Path, limit: Optional[int]) -> tuple[list[dict], list[int], dict[str, None]]:
    """A JSONL file's objects (the first `limit`), each one's line, and every key seen in order.
    Raises UserError naming the line that is not a JSON object, or a file with none."""
    content = read_utf8(path, "JSONL")
    rows: list[dict] = []
    lines: list[int] = []
    columns: dict[str, None] = {}  # every key seen, in order
    for number, line in enumerate(content.splitlines(), 1):
        if limit is not None and len(rows) == limit:
            break
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"JSONL {path} line {number} is not valid JSON ({e.msg}); write one JSON object per line") from e
        if not isinstance(row, dict):
            raise UserError(f"JSONL {path} line {number} holds a JSON {type(row).__name__}, not an object; write one "
                            "object per line, e.g. {\"text\": \"...\", \"label\": \"positive\"}")
        rows.append(row)
        lines.append(number)
        columns.update(dict.fromkeys(row))
    if not rows:
        raise UserError(f"JSONL {path} holds no rows; write one JSON object per line, e.g. "
                        "{\"text\": \"...\", \"label\": \"positive\"}")
    return rows, lines, columns


def _read_jsonl(path: Path, text_column: Optional[str], label_column: Optional[str], limit: Optional[int]) -> Table:
    rows, lines, columns = _jsonl_rows(path, limit)
    text, label = _columns(list(columns), text_column, label_column, f"JSONL {path}")
    table = Table(path, "jsonl", text, label, [], [], line_numbers=lines)
    for i, row in enumerate(rows):
        for key in (text, label):
            if key not in row:
                raise UserError(f"{table.where(i)} has no key '{key}'; give every line the keys '{text}' and "
                                f"'{label}'")
    table.texts = _texts([r[text] for r in rows], text, table.where)
    table.labels = _labels([r[label] for r in rows], label, table.where)
    return table


def class_label_names(metadata: Optional[dict[bytes, bytes]], column: str) -> Optional[list[str]]:
    """The names of a Hugging Face ClassLabel column, from a Parquet schema's b"huggingface"
    metadata ({"info": {"features": {COLUMN: {"_type": "ClassLabel", "names": [...]}}}}), else None."""
    try:
        features = json.loads((metadata or {})[b"huggingface"])["info"]["features"]
        feature = features[column]
        if feature.get("_type") == "ClassLabel" and feature.get("names"):
            return [str(n) for n in feature["names"]]
    except (KeyError, TypeError, AttributeError, ValueError):
        pass
    return None


def read_parquet_column(path: Path, column: Optional[str], defaults: tuple[str, ...] = TEXT_COLUMNS,
                        batch_rows: int = 4096):
    """Yield the values of one column of a Parquet file, batch by batch (the file is never held
    whole). `column` None: the first of `defaults` present. Raises UserError for an unreadable
    file or a missing column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = f"Parquet file {path}"
    try:
        pf = pq.ParquetFile(path)
        name = _choose(list(pf.schema_arrow.names), column, defaults, "text_column", "text", kind)
        for batch in pf.iter_batches(batch_size=batch_rows, columns=[name]):
            yield from batch.column(0).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{kind} cannot be read ({one_line(e)}); check that it is a complete Parquet file") from e


def _read_parquet(path: Path, text_column: Optional[str], label_column: Optional[str], limit: Optional[int]) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    kind = f"Parquet file {path}"
    try:
        pf = pq.ParquetFile(path)
        schema = pf.schema_arrow
        text, label = _columns(list(schema.names), text_column, label_column, kind)
        texts: list[Any] = []
        labels: list[Any] = []
        for batch in pf.iter_batches(columns=[text, label]):
            texts.extend(batch.column(text).to_pylist())
            labels.extend(batch.column(label).to_pylist())
            if limit is not None and len(texts) >= limit:
                break
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{kind} cannot be read ({one_line(e)}); check that it is a complete Parquet file") from e
    texts, labels = texts[:limit], labels[:limit]
    table = Table(path, "parquet", text, label, [], [], class_names=class_label_names(schema.metadata, label))
    table.texts = _texts(texts, text, table.where)
    table.labels = _labels(labels, label, table.where)
    return table


def read_table(path: Path, text_column: Optional[str] = None, label_column: Optional[str] = None,
               limit: Optional[int] = None) -> Table:
    """The text and label columns of a .csv, .tsv, .jsonl or .parquet file, its first `limit` rows.

    Raises UserError for an unknown file ending, an unreadable or malformed file, or a column
    that is missing (naming the columns the file has and the key to set).
    """
    path = Path(path)
    fmt = table_format(path)
    if fmt is None:
        raise UserError(f"{path} has an unknown file ending '{path.suffix}'; use a table ending in "
                        f"{', '.join(TABLE_FORMATS)}")
    if fmt == "jsonl":
        return _read_jsonl(path, text_column, label_column, limit)
    if fmt == "parquet":
        return _read_parquet(path, text_column, label_column, limit)
    return _read_delimited(path, fmt, text_column, label_column, limit)
