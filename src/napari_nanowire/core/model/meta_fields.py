"""Typed, checked reads of a model file's JSON metadata; every error names the file and field."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any, NoReturn

from ..errors import NanowireError

MAX_DEPTH = 32
"""Deepest nesting of metadata objects and lists (written files use 4 levels)."""
DAMAGED = "the file is damaged or was edited by hand; use another copy or train again"


class ModelFileError(NanowireError):
    """A model file that cannot be used, with a message naming the file and what to do."""


class TooLongNumber:
    """A JSON integer too long to be a setting (it stands in for it until the check names it)."""

    def __init__(self, text: str) -> None:
        self.digits = len(text.lstrip("-"))


def parse_int(text: str) -> int | TooLongNumber:
    """``json.loads`` integer hook: Python refuses > 4300 digits anonymously; we name the field."""
    return int(text) if len(text) <= 40 else TooLongNumber(text)


class Fields:
    """Typed reads from one JSON object of a model file; errors name the file and the field."""

    def __init__(self, obj: Any, where: str, prefix: str = "") -> None:
        self.where, self.prefix = where, prefix
        if not isinstance(obj, dict):
            self.fail("", f"is {kind_of(obj)}, not a JSON object")
        self.obj = obj

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}" if key else self.prefix.rstrip(".") or "metadata"

    def fail(self, key: str, problem: str, advice: str = DAMAGED) -> NoReturn:
        name = self.name(key)
        what = "its metadata" if name == "metadata" else f"metadata field {name!r}"
        raise ModelFileError(f"Model file {self.where}: {what} {problem}; {advice}.")

    def get(self, key: str, required: bool) -> Any:
        value = self.obj.get(key)
        if value is None and required:
            self.fail(key, "is missing")
        return value

    def integer(self, key: str, lo: int, hi: int, required: bool = False) -> int | None:
        value = self.get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"is {kind_of(value)}, not a whole number")
        if not lo <= value <= hi:
            self.fail(key, f"is {value}, outside {lo}..{hi}")
        return value

    def number(self, key: str, lo: float, hi: float, required: bool = False) -> float | None:
        value = self.get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(key, f"is {kind_of(value)}, not a number")
        if not (math.isfinite(value) and lo < value <= hi):
            self.fail(key, f"is {value}, not a number in ({lo:g}, {hi:g}]")
        return float(value)

    def text(self, key: str, required: bool = False) -> str | None:
        value = self.get(key, required)
        if value is not None and not isinstance(value, str):
            self.fail(key, f"is {kind_of(value)}, not a text")
        return value

    def texts(self, key: str, min_len: int, required: bool = False) -> list[str] | None:
        value = self.get(key, required)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"is {kind_of(value)}, not a list of texts")
        if len(value) < min_len:
            self.fail(key, f"lists {len(value)} names, fewer than {min_len}")
        return list(value)

    def integers(self, key: str, length: int, hi: int) -> list[int] | None:
        value = self.get(key, False)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != length:
            self.fail(key, f"is {kind_of(value)}, not a list of {length} whole numbers")
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= hi:
                self.fail(f"{key}[{i}]", f"is {short(item)}, not a whole number in 1..{hi}")
        return list(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"is {kind_of(value)}, not a JSON object")
        return value

    def listing(self, key: str) -> list[Any]:
        value = self.get(key, False)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"is {kind_of(value)}, not a list")
        return value

    def rest(self, cls: type) -> dict[str, Any]:
        """The keys ``cls`` has no field for, kept as they are."""
        known = {f.name for f in fields(cls)} - {"extra"}
        return {k: v for k, v in self.obj.items() if k not in known}


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def kind_of(value: Any) -> str:
    """How to name a wrong value in an error: short values as themselves, others by type."""
    if isinstance(value, (dict, list)):
        return f"a {type(value).__name__} {short(value)}"
    if isinstance(value, str):
        return f"the text {short(value)}"
    return short(value)


def check_plain(value: Any, where: str, name: str = "", depth: int = 0) -> None:
    """Refuse a :class:`TooLongNumber` or nesting deeper than ``MAX_DEPTH``, naming where."""
    problem = ""
    if isinstance(value, TooLongNumber):
        problem = f"is a number of {value.digits} digits"
    elif depth > MAX_DEPTH:
        problem = f"is nested more than {MAX_DEPTH} levels deep"
    if problem:
        what = f"metadata field {name!r}" if name else "its metadata"
        raise ModelFileError(f"Model file {where}: {what} {problem}; {DAMAGED}.")
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(item, where, f"{name}.{key}" if name else key, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_plain(item, where, f"{name}[{i}]", depth + 1)


def check_known(read: Fields, key: str, value: str, known: Sequence[str]) -> None:
    """Refuse a name (encoder, normalisation) this code does not know: a newer file."""
    if value not in known:
        listing = ", ".join(known)
        problem = f"is {value!r}, which this napari-nanowire does not know ({listing})"
        read.fail(key, problem, "update napari-nanowire")


def section(read: Fields, key: str, required: bool, parse: Callable[[Fields], Any]) -> Any:
    """A nested settings object (a head's, the SSL's), typed by ``parse``; None if absent."""
    value = read.get(key, required)
    return None if value is None else parse(Fields(value, read.where, f"{read.prefix}{key}."))


def meta_error(where: str, problem: str) -> ModelFileError:
    """A ModelFileError about the metadata as a whole (not JSON, nested too deeply)."""
    return ModelFileError(f"Model file {where}: its metadata {problem}; {DAMAGED}.")
