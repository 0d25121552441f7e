"""The document's component schemas: the routes' pydantic models, as exact as JSON Schema can say.

``component_schemas(models)`` runs pydantic's JSON Schema generation with
two corrections where pydantic's output says less than the model checks:

* a string stripped before its length is checked (``strip_whitespace``,
  ``min_length >= 1``) needs a character that is not white space;
* a dict with constrained keys (``patternProperties``) takes no other key.

and adds a ``<Model>Form`` variant of each request body model, for
``application/x-www-form-urlencoded``: what an htmx form posts. A form
carries strings only, so the variant differs from the JSON schema the way
the routes' form parsing does (``form_fields``, ``rule_form_fields``,
``_form_reading``, the token form):

* no value is null (a form cannot say null); an optional field may be empty,
  which means absent (or, in an update, cleared);
* a boolean may also be any of the words pydantic reads as one (``on``,
  ``yes``, ``0``, ...);
* a list or a mapping is one comma-separated field where a route parses it
  so (``FORM_LISTS``), and cannot be posted as a form otherwise.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema

from app.auth.tokens import SCOPE_PATTERN
from app.validation import BLANK_PATTERN, SLUG_PATTERN, SPACE_CLASS

REF = "#/components/schemas/{model}"
FORM = "Form"

# Forms whose parser reads a blank field (white space only) as an empty one: form_fields, rule_form_fields.
BLANK_IS_EMPTY = frozenset({"AnnotationCreate", "AnnotationUpdate", "RuleCreate", "RuleUpdate"})
BLANK = {"type": "string", "pattern": BLANK_PATTERN}
# The strings pydantic takes for a boolean (lax mode), as a form sends them.
FORM_BOOLEANS = ["true", "false", "on", "off", "yes", "no", "1", "0", "t", "f", "y", "n"]
_SLUG = SLUG_PATTERN.strip("^$")
_SCOPE = SCOPE_PATTERN.strip("^$")
# (model, field) -> the one comma-separated form field a route reads a list or a mapping from.
FORM_LISTS: dict[tuple[str, str], dict[str, Any]] = {
    # annotations.form_fields: "a, b" -> ["a", "b"] (each stripped, empty ones dropped; at most 16 of 64)
    **{
        (model, "tags"): {"type": "string", "pattern": r"^[^,]{0,64}(?:,[^,]{0,64}){0,15}$"}
        for model in ("AnnotationCreate", "AnnotationUpdate")
    },
    # readings._form_reading and rule_form_fields: "k=v,k2=v2" -> {"k": "v", "k2": "v2"} (at most 16, values to 128)
    **{
        (model, "tags"): {"type": "string", "pattern": rf"^{_SLUG}=[^,]{{0,128}}(?:,{_SLUG}=[^,]{{0,128}}){{0,15}}$"}
        for model in ("Reading", "RuleCreate", "RuleUpdate")
    },
    # rule_form_fields: channel ids, a comma list
    **{
        (model, "channels"): {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}(?:,[A-Za-z0-9_-]{1,64}){0,15}$"}
        for model in ("RuleCreate", "RuleUpdate")
    },
    # the token form (routes/tokens.py): comma lists
    ("TokenCreate", "scope"): {"type": "string", "pattern": rf"^{_SCOPE}(?:,{_SCOPE}){{0,31}}$"},
    ("TokenCreate", "devices"): {"type": "string", "pattern": rf"^{_SLUG}(?:,{_SLUG}){{0,99}}$"},
}


# What pydantic's strip_whitespace strips (Unicode White_Space; not U+001C..U+001F as str.strip does).
_TRIMMED = SPACE_CLASS.replace(r"\x1c-\x1f", "")


class _Exact(GenerateJsonSchema):
    def str_schema(self, schema: core_schema.StringSchema) -> JsonSchemaValue:
        out = super().str_schema(schema)
        if schema.get("strip_whitespace") and schema.get("min_length", 0) >= 1:
            # Stripped first, then measured: "  " is too short.
            visible = f"[^{_TRIMMED}]"
            if "pattern" in out:
                out = {"allOf": [out, {"pattern": visible}]}
            else:
                out["pattern"] = visible
        return out

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        out = super().dict_schema(schema)
        if "patternProperties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out


def component_schemas(models: list[type[BaseModel]], bodies: list[type[BaseModel]]) -> dict[str, Any]:
    """Every model's schema, plus a form variant (``<Name>Form``) of each request body model."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF, schema_generator=_Exact)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    for schema in schemas.values():
        for prop in schema.get("properties", {}).values():
            # A field that may be left out but not sent as null (SkipJsonSchema[None]) has no default to show.
            if "default" in prop and prop["default"] is None and not _admits_null(prop):
                del prop["default"]
    for model in bodies:
        name = model.__name__
        schemas[name + FORM] = form_variant(name, schemas[name])
    return schemas


def _admits_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_admits_null(branch) for branch in schema.get("anyOf", []))


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [b for b in branches if b.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    if len(kept) == 1:
        return {**rest, **kept[0]}
    return {**rest, "anyOf": kept}


def _form_value(model: str, field: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """One field as a form carries it; None when a form cannot carry it."""
    if (model, field) in FORM_LISTS:
        return {**FORM_LISTS[(model, field)], "description": "a comma-separated list, as a form sends it"}
    if schema.get("type") in ("array", "object"):
        return None
    if schema.get("type") == "boolean":
        return {"anyOf": [{"type": "boolean"}, {"enum": FORM_BOOLEANS}]}
    if isinstance(schema.get("anyOf"), list):
        branches = [_form_value(model, field, b) for b in schema["anyOf"]]
        if any(b is None for b in branches):
            return None
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, "anyOf": branches}
    return schema


def form_variant(model: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (a JSON body) as an ``application/x-www-form-urlencoded`` body."""
    out = copy.deepcopy(schema)
    out["title"] = model + FORM
    required = set(out.get("required", []))
    properties: dict[str, Any] = {}
    for field, prop in out.get("properties", {}).items():
        value = _form_value(model, field, _without_null(prop))
        if value is None:
            continue
        if model in BLANK_IS_EMPTY and value.get("type") == "string":
            value = {"allOf": [value, {"pattern": f"[^{SPACE_CLASS}]"}]}  # a blank one would be dropped
        if field not in required:
            # An empty field is absent (in an update, a cleared one).
            value = {"anyOf": [value, BLANK if model in BLANK_IS_EMPTY else {"type": "string", "maxLength": 0}]}
        properties[field] = value
    out["properties"] = properties
    out["required"] = [f for f in out.get("required", []) if f in properties]
    if not out["required"]:
        del out["required"]
    out["additionalProperties"] = False
    return out
