"""Validate Sheets v4 JSON against Google's own discovery document.

The fake must reject exactly what Google rejects, otherwise a typo such as
``userEnteredValu`` passes every test and fails in production. Rather than hand-writing
schemas, we walk the discovery document that ships with google-api-python-client (the
same one the generated clients are built from), so the accepted shapes track Google's.

What is checked mirrors Google's JSON -> proto parsing (proto3 JSON mapping):

* unknown field names (reported like Google: ``Invalid JSON payload received. Unknown
  name "foo" at 'requests[0].update_cells.rows[0]': Cannot find field.``; paths use the
  proto snake_case names, as Google's do);
* the lowerCamelCase JSON name *and* the snake_case proto name are both accepted, as
  Google's parser does; the normalised copy uses camelCase only;
* scalar types: integers may arrive as JSON numbers, integral floats or numeric strings
  (proto3 JSON allows all three for int32/int64); ``number`` accepts int/float and the
  proto3 strings ``"NaN"``/``"Infinity"``; booleans and strings are strict;
* enums by name (or by number, which proto3 JSON also allows);
* ``null`` anywhere means "unset" and is dropped from the normalised copy.

Besides bodies, this module parses the partial-response / field-mask syntax
(``sheets(properties(sheetId,title)),spreadsheetId`` or ``userEnteredFormat.textFormat``)
and checks its paths against a schema, because Google validates both the ``fields``
query parameter and the ``fields`` masks inside batchUpdate requests.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from googleapiclient import discovery_cache

__all__ = [
    "FieldMaskSyntaxError",
    "FieldTree",
    "Method",
    "Violation",
    "check",
    "document",
    "filter_fields",
    "global_parameters",
    "mask_paths",
    "methods",
    "parse_field_mask",
    "schema",
    "unknown_field_paths",
]

PROTO_PACKAGE = "type.googleapis.com/google.apps.sheets.v4"

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_SCALAR_LABELS: dict[str, str] = {
    "int32": "TYPE_INT32",
    "uint32": "TYPE_UINT32",
    "int64": "TYPE_INT64",
    "uint64": "TYPE_UINT64",
    "double": "TYPE_DOUBLE",
    "float": "TYPE_FLOAT",
    "google-fieldmask": "type.googleapis.com/google.protobuf.FieldMask",
    "google-datetime": "type.googleapis.com/google.protobuf.Timestamp",
    "google-duration": "type.googleapis.com/google.protobuf.Duration",
    "byte": "TYPE_BYTES",
}
_UNSET = object()


@functools.cache
def document() -> dict[str, Any]:
    """The parsed discovery document, loaded once per process (it is ~1 MB of JSON)."""
    raw = discovery_cache.get_static_doc("sheets", "v4")
    if raw is None:  # pragma: no cover - only if google-api-python-client drops the file
        raise RuntimeError("google-api-python-client has no static Sheets v4 discovery doc")
    doc: dict[str, Any] = json.loads(raw)
    return doc


def schema(name: str) -> dict[str, Any]:
    """One named schema (``BatchUpdateSpreadsheetRequest``, ``CellData``...)."""
    schemas: dict[str, Any] = document()["schemas"]
    return schemas[name]


@dataclass(frozen=True)
class Violation:
    """One problem, shaped like an entry of Google's ``BadRequest.fieldViolations``."""

    field: str
    description: str


def check(schema_name: str, body: Any, *, root: str = "") -> tuple[list[Violation], Any]:
    """Validate ``body`` as an instance of ``schema_name``; returns ``(violations,
    normalised copy)``.

    ``root`` is the proto field the body binds to, which prefixes every path: the
    ``values.update`` body is bound to ``data`` so Google reports ``at 'data'``.
    """
    walker = _Walker()
    if not isinstance(body, dict):
        walker.violations.append(
            Violation(root, 'Invalid JSON payload received. Unknown name "": Root element '
                            "must be a message.")
        )
        return walker.violations, None
    normalised = walker.message(schema_name, body, root)
    return walker.violations, normalised


@functools.cache
def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", r"_\1", name).lower()


@functools.cache
def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _label(prop: dict[str, Any]) -> str:
    """How Google names a field's type in ``Invalid value at '...' (LABEL), value``."""
    if "$ref" in prop:
        return f"{PROTO_PACKAGE}.{prop['$ref']}"
    kind = prop.get("type")
    if "enum" in prop:
        return "TYPE_ENUM"
    if kind == "array":
        items = prop.get("items", {})
        # ValueRange.values is ``repeated google.protobuf.ListValue`` in the proto.
        if items.get("type") == "any":
            return "type.googleapis.com/google.protobuf.ListValue"
        return _label(items)
    if kind == "object":
        return "type.googleapis.com/google.protobuf.Struct"
    if kind == "boolean":
        return "TYPE_BOOL"
    if kind == "string":
        return _SCALAR_LABELS.get(prop.get("format", ""), "TYPE_STRING")
    if kind in ("integer", "number"):
        default = "TYPE_INT32" if kind == "integer" else "TYPE_DOUBLE"
        return _SCALAR_LABELS.get(prop.get("format", ""), default)
    return "TYPE_MESSAGE"


class _Walker:
    """Recursive descent over (schema, value) pairs, collecting every violation."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []

    def _invalid(self, path: str, prop: dict[str, Any], value: Any) -> object:
        self.violations.append(
            Violation(path, f"Invalid value at '{path}' ({_label(prop)}), {_dump(value)}")
        )
        return _UNSET

    def _unknown(self, parent: str, name: str, reason: str) -> None:
        where = f" at '{parent}'" if parent else ""
        self.violations.append(
            Violation(parent, f'Invalid JSON payload received. Unknown name "{name}"{where}: '
                              f"{reason}")
        )

    def message(self, schema_name: str, value: dict[str, Any], path: str) -> dict[str, Any]:
        return self._properties(schema(schema_name).get("properties", {}), value, path)

    def _properties(
        self, props: dict[str, Any], value: dict[str, Any], path: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key
            if name not in props and "_" in name and _camel(name) in props:
                name = _camel(name)  # proto field name; Google accepts it too
            prop = props.get(name)
            if prop is None:
                self._unknown(path, key, "Cannot find field.")
                continue
            result = self.value(prop, item, _join(path, _snake(name)), key, path)
            if result is not _UNSET:
                out[name] = result
        return out

    def value(self, prop: dict[str, Any], value: Any, path: str, name: str, parent: str) -> Any:
        if value is None:
            return _UNSET  # proto3 JSON: null means "field not set"
        kind = prop.get("type")
        if kind == "array":
            if not isinstance(value, list):
                return self._invalid(path, prop, value)
            items = prop.get("items", {})
            out = []
            for index, element in enumerate(value):
                if element is None and items.get("type") != "any":
                    self._invalid(f"{path}[{index}]", items, element)
                    continue
                result = self.value(items, element, f"{path}[{index}]", name, parent)
                if result is not _UNSET:
                    out.append(result)
            return out
        if kind == "any":
            return value
        if isinstance(value, list):
            self._unknown(parent, name, "Proto field is not repeating, cannot start list.")
            return _UNSET
        if "$ref" in prop:
            if not isinstance(value, dict):
                return self._invalid(path, prop, value)
            return self.message(prop["$ref"], value, path)
        if kind == "object":
            if not isinstance(value, dict):
                return self._invalid(path, prop, value)
            if "additionalProperties" in prop:
                extra = prop["additionalProperties"]
                mapped = {
                    key: self.value(extra, item, f"{path}[{key}]", key, path)
                    for key, item in value.items()
                }
                return {key: item for key, item in mapped.items() if item is not _UNSET}
            if "properties" in prop:
                return self._properties(prop["properties"], value, path)
            return value
        return self._scalar(prop, value, path)

    def _scalar(self, prop: dict[str, Any], value: Any, path: str) -> Any:
        kind = prop.get("type")
        if isinstance(value, dict):
            return self._invalid(path, prop, value)
        if "enum" in prop:
            names: list[str] = prop["enum"]
            if isinstance(value, str) and value in names:
                return value
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
                return names[value]  # proto3 JSON also accepts the enum number
            return self._invalid(path, prop, value)
        if kind == "string":
            return value if isinstance(value, str) else self._invalid(path, prop, value)
        if kind == "boolean":
            return value if isinstance(value, bool) else self._invalid(path, prop, value)
        if kind == "integer":
            number = _as_int(value)
            low, high = _INT_RANGES.get(prop.get("format", "int32"), _INT_RANGES["int64"])
            if number is None or not low <= number <= high:
                return self._invalid(path, prop, value)
            return number
        if kind == "number":
            if isinstance(value, bool):
                return self._invalid(path, prop, value)
            if isinstance(value, int | float):
                return value
            if isinstance(value, str):
                special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
                if value in special:
                    return special[value]
                try:
                    return float(value)
                except ValueError:
                    return self._invalid(path, prop, value)
            return self._invalid(path, prop, value)
        return value


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        try:
            as_float = float(text)
        except ValueError:
            return None
        return int(as_float) if as_float.is_integer() else None
    return None


# --- field masks and partial responses -------------------------------------------------

# A parsed mask: name -> sub-mask, where None means "this whole subtree".
FieldTree = dict[str, "FieldTree | None"]


class FieldMaskSyntaxError(ValueError):
    pass


def parse_field_mask(text: str) -> FieldTree:
    """Parse ``a,b(c,d/e),f.g`` (partial-response syntax, also used by request masks)."""
    parser = _MaskParser(text)
    tree = parser.fields()
    if parser.pos != len(text):
        raise FieldMaskSyntaxError(f"Invalid field selection {text}")
    return tree


class _MaskParser:
    def __init__(self, text: str) -> None:
        self.text = text.replace(" ", "")
        self.pos = 0

    def fields(self) -> FieldTree:
        tree: FieldTree = {}
        while self.pos < len(self.text):
            self._field(tree)
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
                continue
            break
        return tree

    def _field(self, tree: FieldTree) -> None:
        match = re.compile(r"[A-Za-z0-9_*]+(?:[./][A-Za-z0-9_*]+)*").match(self.text, self.pos)
        if match is None:
            raise FieldMaskSyntaxError(f"Invalid field selection {self.text}")
        self.pos = match.end()
        names = re.split(r"[./]", match.group(0))
        sub: FieldTree | None = None
        if self.pos < len(self.text) and self.text[self.pos] == "(":
            self.pos += 1
            sub = self.fields()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise FieldMaskSyntaxError(f"Invalid field selection {self.text}")
            self.pos += 1
        _insert(tree, names, sub)


def _insert(tree: FieldTree, names: list[str], sub: FieldTree | None) -> None:
    head, rest = names[0], names[1:]
    if not rest:
        if sub is None or tree.get(head, {}) is None:
            tree[head] = None
        else:
            existing = tree.get(head) or {}
            existing.update(sub)
            tree[head] = existing
        return
    child = tree.get(head, {})
    if child is None:
        return  # already selecting the whole subtree
    tree[head] = child
    _insert(child, rest, sub)


def mask_paths(tree: FieldTree, prefix: str = "") -> list[str]:
    """Flatten a tree into dotted leaf paths (``userEnteredFormat.textFormat.bold``)."""
    out: list[str] = []
    for name, sub in tree.items():
        path = _join(prefix, name)
        if sub is None:
            out.append(path)
        else:
            out.extend(mask_paths(sub, path))
    return out


def _resolve(prop: dict[str, Any]) -> dict[str, Any] | None:
    """The properties reachable under a field (through arrays and $refs), or None."""
    while prop.get("type") == "array":
        prop = prop.get("items", {})
    if "$ref" in prop:
        props: dict[str, Any] = schema(prop["$ref"]).get("properties", {})
        return props
    if prop.get("type") == "object" and "properties" in prop:
        inline: dict[str, Any] = prop["properties"]
        return inline
    return None


def unknown_field_paths(schema_name: str, tree: FieldTree) -> list[str]:
    """Paths of ``tree`` that name no field of ``schema_name`` (dotted, as written)."""
    bad: list[str] = []

    def walk(props: dict[str, Any] | None, sub: FieldTree, prefix: str) -> None:
        for name, child in sub.items():
            path = _join(prefix, name)
            if name == "*":
                continue
            if props is None or name not in props:
                # Maps (additionalProperties) and "any" values accept any key.
                if props is None:
                    continue
                bad.append(path)
                continue
            if child is not None:
                target = _resolve(props[name])
                if target is None and props[name].get("type") not in ("object", "any"):
                    bad.extend(_join(path, leaf) for leaf in mask_paths(child))
                    continue
                walk(target, child, path)

    walk(schema(schema_name).get("properties", {}), tree, "")
    return bad


def filter_fields(value: Any, tree: FieldTree | None) -> Any:
    """Apply a partial-response selection to a JSON value (lists map element-wise)."""
    if tree is None:
        return value
    if isinstance(value, list):
        return [filter_fields(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    if "*" in tree:
        star = tree["*"]
        return {key: filter_fields(item, star) for key, item in value.items()}
    out = {}
    for name, sub in tree.items():
        if name in value:
            filtered = filter_fields(value[name], sub)
            if filtered not in ({}, []) or sub is None:
                out[name] = filtered
    return out


# --- methods ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """One REST method of the discovery document (``spreadsheets.values.update``...)."""

    id: str
    http_method: str
    flat_path: str
    parameters: dict[str, dict[str, Any]]
    request: str | None
    response: str | None
    pattern: re.Pattern[str]


@functools.cache
def methods() -> tuple[Method, ...]:
    """Every method, most specific path first (``values/{range}:append`` before
    ``values/{range}``), matched against the *raw* (still percent-encoded) path."""
    found: list[Method] = []

    def walk(resources: dict[str, Any]) -> None:
        for resource in resources.values():
            for spec in resource.get("methods", {}).values():
                flat = "/" + spec["flatPath"]
                regex = re.escape(flat)
                for param in re.findall(r"\{(\w+)\}", flat):
                    # ``range`` may hold ':' (A1:B2) unencoded; everything else may not.
                    body = ".+?" if param == "range" else "[^/:]+"
                    regex = regex.replace(re.escape("{" + param + "}"), f"(?P<{param}>{body})")
                found.append(
                    Method(
                        id=spec["id"].removeprefix("sheets."),
                        http_method=spec["httpMethod"],
                        flat_path=flat,
                        parameters=spec.get("parameters", {}),
                        request=spec.get("request", {}).get("$ref"),
                        response=spec.get("response", {}).get("$ref"),
                        pattern=re.compile(f"^{regex}$"),
                    )
                )
            walk(resource.get("resources", {}))

    walk(document()["resources"])
    found.sort(key=lambda m: (":" not in m.flat_path.rsplit("/", 1)[-1], -len(m.flat_path)))
    return tuple(found)


def global_parameters() -> dict[str, dict[str, Any]]:
    """Parameters every method accepts (``fields``, ``alt``, ``prettyPrint``...)."""
    params: dict[str, dict[str, Any]] = document()["parameters"]
    return params
