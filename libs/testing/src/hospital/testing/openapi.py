"""Checks on a service's OpenAPI document: every route documents the body of its success answer."""

from __future__ import annotations

from typing import Any

METHODS = ("get", "put", "post", "patch", "delete")


def _resolve(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = doc.get("components", {}).get("schemas", {}).get(name, {})
    return schema


def _documented(schema: dict[str, Any] | None, doc: dict[str, Any]) -> bool:
    """A schema that says something about the body: a model with properties, a map or a list of such, a
    string or binary body, a number... not ``{}`` nor a bare ``object`` (what ``dict[str, Any]`` gives)."""
    if not schema:
        return False
    schema = _resolve(schema, doc)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return all(_documented(s, doc) for s in schema[key])
    kind = schema.get("type")
    if kind == "array":
        return _documented(schema.get("items"), doc)
    if kind == "object" or "properties" in schema:
        extra = schema.get("additionalProperties")
        return bool(schema.get("properties")) or (isinstance(extra, dict) and _documented(extra, doc))
    return kind is not None


def undocumented_responses(doc: dict[str, Any]) -> list[str]:
    """``"METHOD /path"`` of every operation without a 2xx answer whose body has a documented schema
    (an answer without a body, 204, counts as documented)."""
    missing = []
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            op = item.get(method)
            if op is None:
                continue
            ok = False
            for status, response in op.get("responses", {}).items():
                if not str(status).startswith("2"):
                    continue
                if str(status) == "204":
                    ok = True
                    continue
                content = response.get("content") or {}
                if content and all(_documented(media.get("schema"), doc) for media in content.values()):
                    ok = True
            if not ok:
                missing.append(f"{method.upper()} {path}")
    return missing
