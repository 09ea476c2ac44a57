#!/usr/bin/env python3
"""Validate a Grafana dashboard JSON file without running Grafana.

Grafana cannot run where this project is built and tested, so the dashboard
is checked against Grafana's own dashboard schema as published in the
`grafana-foundation-sdk` package (Grafana Labs' generated models of the
dashboard, panel-plugin and datasource-query schemas).

The SDK's `from_json` is lenient: it ignores fields it does not know and
stores values without checking their types. So the check has two steps:

1. The SDK loads the dashboard (`Dashboard.from_json`), which must not raise.
2. A JSON Schema is derived from the SDK's models (their type annotations
   and JSON field names), closed with `additionalProperties: false`, and the
   dashboard is validated against it with `jsonschema`. An unknown or
   mistyped field anywhere the SDK has a model (dashboard, panels, rows,
   gridPos, fieldConfig, each panel plugin's options and custom field
   config, Prometheus queries, value mappings, variables) is an error.

Then the project's own rules: every panel's type is a known panel plugin,
every panel and query uses the provisioned Prometheus datasource, every
target has a non-empty expr, panel ids are unique, panels fit the 24-column
grid without overlapping, and every `gateway:*` recording rule a query
references is defined in prometheus/rules.yml.

Usage: validate_dashboard.py [--dashboard FILE|-] [--rules rules.yml]
Exit status: 0 valid, 1 invalid (errors on stderr), 2 missing packages.
"""

import argparse
import enum
import importlib.metadata
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path

HERE = Path(__file__).resolve().parent
OBSERVABILITY = HERE.parent
REQUIREMENTS = OBSERVABILITY / "requirements.txt"
INSTALL_HINT = "pip install -r observability/requirements.txt"

# The datasource every panel and query must use: the one provisioned in
# grafana/provisioning/datasources/prometheus.yml.
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GRID_COLUMNS = 24

# Fields Grafana itself writes that the SDK's models do not declare. Each is
# allowed on that model only, and only this one field.
#   VariableModel.definition: the query text Grafana's variable editor shows
#   and stores next to `query` for query variables.
UNDECLARED_FIELDS = {"VariableModel": {"definition": {"type": "string"}}}


def pinned_requirements():
    """(name, version) pairs from requirements.txt (`name==version` lines)."""
    pins = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins.append((name.strip(), version.strip()))
    return pins


def require_packages():
    """Exit 2 with an install hint unless every pinned package is installed
    at its pinned version."""
    problems = []
    for name, version in pinned_requirements():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            problems.append("%s is not installed (pinned %s)" % (name, version))
            continue
        if installed != version:
            problems.append("%s %s is installed, %s is pinned" % (name, installed, version))
    if problems:
        for p in problems:
            print("missing Python package: %s" % p, file=sys.stderr)
        print(
            "the dashboard validator needs the pinned packages: run `%s`" % INSTALL_HINT,
            file=sys.stderr,
        )
        sys.exit(2)


# ---- a JSON Schema derived from the SDK's models ----


class SchemaFromModels:
    """Builds JSON Schema `$defs` from the SDK's generated model classes."""

    def __init__(self, dashboard_models, runtime):
        self.dashboard_models = dashboard_models
        self.runtime = runtime
        self.defs = {}

    @staticmethod
    def def_name(cls):
        return "%s.%s" % (cls.__module__.rsplit(".", 1)[-1], cls.__qualname__)

    def ref(self, cls):
        name = self.def_name(cls)
        if name not in self.defs:
            self.defs[name] = {}  # placeholder: models refer to themselves
            self.defs[name] = self.model(cls)
        return {"$ref": "#/$defs/" + name}

    @staticmethod
    def is_model(tp):
        return (
            isinstance(tp, type)
            and callable(getattr(tp, "from_json", None))
            and callable(getattr(tp, "to_json", None))
        )

    @staticmethod
    def json_keys(cls, hints):
        """attribute -> JSON key, found by setting each attribute to a marker
        and seeing under which key the SDK's own `to_json` writes it."""
        keys = {}
        for attr in hints:
            obj = cls()
            marker = object()
            setattr(obj, attr, marker)
            found = [k for k, v in obj.to_json().items() if v is marker]
            if len(found) != 1:
                raise RuntimeError("cannot tell the JSON key of %s.%s" % (cls.__qualname__, attr))
            keys[attr] = found[0]
        return keys

    @staticmethod
    def is_optional(tp):
        return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)

    def model(self, cls):
        hints = typing.get_type_hints(cls)
        keys = self.json_keys(cls, hints)
        props = {keys[a]: self.of(tp) for a, tp in hints.items()}
        props.update(UNDECLARED_FIELDS.get(cls.__qualname__, {}))
        required = sorted(keys[a] for a, tp in hints.items() if not self.is_optional(tp))
        schema = {
            "type": "object",
            "title": cls.__qualname__,
            "properties": props,
            "additionalProperties": False,
        }
        if required:
            schema["required"] = required
        if cls is self.dashboard_models.Panel:
            return self.panel(schema)
        return schema

    def panel(self, base):
        """A panel's options, custom field config and queries depend on its
        plugin type and datasource type, as in the SDK's `Panel.from_json`."""
        plugins = self.runtime.panelcfg_variants
        base["properties"]["type"] = {"enum": sorted(plugins)}
        rules = [base]
        for ident, cfg in sorted(plugins.items()):
            then = {"properties": {}}
            if cfg.options_from_json_hook is not None:
                then["properties"]["options"] = self.ref(cfg.options_from_json_hook.__self__)
            if cfg.field_config_from_json_hook is not None:
                custom = self.ref(cfg.field_config_from_json_hook.__self__)
                then["properties"]["fieldConfig"] = {
                    "properties": {"defaults": {"properties": {"custom": custom}}}
                }
            if then["properties"]:
                rules.append({"if": self.has_const("type", ident), "then": then})
        for ident, cfg in sorted(self.runtime.dataquery_variants.items()):
            model = getattr(cfg.from_json_hook, "__self__", None)
            if not self.is_model(model):
                continue  # decoded by a function, not a model: no schema to derive
            query = self.ref(model)
            rules.append(
                {
                    "if": {
                        "properties": {"datasource": self.has_const("type", ident)},
                        "required": ["datasource"],
                    },
                    "then": {"properties": {"targets": {"items": query}}},
                }
            )
        return {"allOf": rules}

    @staticmethod
    def has_const(key, value):
        return {"properties": {key: {"const": value}}, "required": [key]}

    @staticmethod
    def discriminator(cls):
        """The fixed `type` values of a model: a Literal annotation, or a
        value its constructor sets and does not take as a parameter."""
        hint = typing.get_type_hints(cls).get("type_val")
        if typing.get_origin(hint) is typing.Literal:
            return typing.get_args(hint)
        if hint is not None and "type_val" not in inspect.signature(cls).parameters:
            fixed = getattr(cls(), "type_val", None)
            if isinstance(fixed, str) and fixed:
                return (fixed,)
        return None

    def union(self, members):
        """A union of models told apart by their `type` field (as the SDK
        decodes them): an if/then chain on `type`; at most one member
        without a fixed `type` takes the rest."""
        tagged = [(m, self.discriminator(m)) for m in members if self.discriminator(m)]
        untagged = [m for m in members if not self.discriminator(m)]
        if len(untagged) > 1 or not tagged:
            return {"anyOf": [self.of(m) for m in members]}
        if untagged:
            schema = self.ref(untagged[0])
        else:
            known = [v for _, values in tagged for v in values]
            schema = {"properties": {"type": {"enum": known}}, "required": ["type"]}
        for model, values in reversed(tagged):
            cond = {"properties": {"type": {"enum": list(values)}}, "required": ["type"]}
            schema = {"if": cond, "then": self.ref(model), "else": schema}
        return schema

    def of(self, tp):
        from grafana_foundation_sdk.cog import variants

        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if tp is typing.Any or tp is object:
            return {}
        if tp is type(None):
            return {"type": "null"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": "string"}
        if origin is typing.Literal:
            return {"enum": list(args)}
        if origin in (typing.Union, types.UnionType):
            present = [a for a in args if a is not type(None)]
            nullable = len(present) < len(args)
            if all(self.is_model(a) for a in present) and len(present) > 1:
                inner = self.union(present)
            elif len(present) == 1:
                inner = self.of(present[0])
            else:
                inner = {"anyOf": [self.of(a) for a in present]}
            return {"anyOf": [inner, {"type": "null"}]} if nullable else inner
        if origin is list:
            return {"type": "array", "items": self.of(args[0])}
        if origin is dict:
            return {"type": "object", "additionalProperties": self.of(args[1])}
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return {"enum": [m.value for m in tp]}
        if isinstance(tp, type) and issubclass(tp, variants.Dataquery):
            return {}  # refined per datasource type in `panel`
        if self.is_model(tp):
            return self.ref(tp)
        raise RuntimeError("no JSON Schema for type %r" % (tp,))

    def dashboard_schema(self):
        root = self.ref(self.dashboard_models.Dashboard)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": self.defs}


# ---- checks ----


def walk_panels(panels):
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels") or [])


def where(dash, path):
    """A JSON path with the panel's title after `panels[i]`."""
    match = re.match(r"^\$\.panels\[(\d+)\]", path)
    if match:
        panels = dash.get("panels") or []
        i = int(match.group(1))
        if i < len(panels) and isinstance(panels[i], dict):
            return "%s (%r)%s" % (match.group(0), panels[i].get("title"), path[match.end() :])
    return path


def sdk_errors(dash):
    """Load with the SDK, then validate against the schema built from it."""
    import jsonschema
    from grafana_foundation_sdk.cog import plugins, runtime
    from grafana_foundation_sdk.models import dashboard as models

    plugins.register_default_plugins()
    errors = []
    try:
        models.Dashboard.from_json(dash)
    except Exception as exc:  # the SDK raises whatever its decoding hits
        errors.append("grafana-foundation-sdk cannot load the dashboard: %s: %s" % (type(exc).__name__, exc))
    schema = SchemaFromModels(models, runtime.Runtime()).dashboard_schema()
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(dash), key=lambda e: e.json_path):
        leaf = innermost(err)
        errors.append("%s: %s" % (where(dash, leaf.json_path), leaf.message))
    return errors


def innermost(err):
    """For "not valid under any of the given schemas" (an optional field,
    a union), the deepest reason, preferring it over "is not null"."""
    while err.context:
        err = max(err.context, key=lambda e: (len(e.absolute_path), e.validator_value != "null"))
    return err


def recorded_rules(rules_path):
    import yaml

    doc = yaml.safe_load(Path(rules_path).read_text())
    return {r["record"] for g in doc.get("groups", []) for r in g.get("rules", []) if "record" in r}


def project_errors(dash, rules_path):
    errors = []
    defined = recorded_rules(rules_path)
    ids = {}
    for panel in walk_panels(dash.get("panels") or []):
        title = panel.get("title")
        pid = panel.get("id")
        if pid in ids:
            errors.append("panel %r: id %r is also used by panel %r" % (title, pid, ids[pid]))
        ids.setdefault(pid, title)
        if panel.get("type") == "row":
            continue
        if panel.get("datasource") != DATASOURCE:
            errors.append(
                "panel %r: datasource is %r, expected %r" % (title, panel.get("datasource"), DATASOURCE)
            )
        targets = panel.get("targets") or []
        if not targets:
            errors.append("panel %r has no targets" % title)
        for target in targets:
            ref = target.get("refId")
            if "datasource" in target and target["datasource"] != DATASOURCE:
                errors.append("panel %r target %s: datasource is %r" % (title, ref, target["datasource"]))
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                errors.append("panel %r target %s: expr is empty" % (title, ref))
                continue
            for name in sorted(set(re.findall(r"\bgateway:[A-Za-z0-9_:]+", expr))):
                if name not in defined:
                    errors.append(
                        "panel %r target %s: recording rule %s is not defined in %s"
                        % (title, ref, name, rules_path)
                    )
    for variable in (dash.get("templating") or {}).get("list") or []:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for name in sorted(set(re.findall(r"\bgateway:[A-Za-z0-9_:]+", text))):
            if name not in defined:
                errors.append("variable %r: recording rule %s is not defined" % (variable.get("name"), name))
    errors += grid_errors(dash.get("panels") or [])
    return errors


def grid_errors(panels):
    """Within one grid (the dashboard, or a collapsed row's panels): inside
    24 columns, positive sizes, no two panels overlapping."""
    errors, boxes = [], []
    for panel in panels:
        title, pos = panel.get("title"), panel.get("gridPos")
        if not isinstance(pos, dict) or not all(isinstance(pos.get(k), int) for k in "xywh"):
            errors.append("panel %r: gridPos needs integer x, y, w, h, got %r" % (title, pos))
            continue
        x, y, w, h = pos["x"], pos["y"], pos["w"], pos["h"]
        if x < 0 or y < 0 or w < 1 or h < 1 or x + w > GRID_COLUMNS:
            errors.append("panel %r: gridPos %r is outside the %d-column grid" % (title, pos, GRID_COLUMNS))
        for other, (ox, oy, ow, oh) in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                errors.append("panel %r: gridPos %r overlaps panel %r" % (title, pos, other))
        boxes.append((title, (x, y, w, h)))
        if panel.get("type") == "row" and panel.get("collapsed"):
            errors += grid_errors(panel.get("panels") or [])
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dashboard", default=str(HERE / "dashboards" / "gateway.json"), help="file, or - for stdin"
    )
    parser.add_argument("--rules", default=str(OBSERVABILITY / "prometheus" / "rules.yml"))
    args = parser.parse_args()
    require_packages()
    text = sys.stdin.read() if args.dashboard == "-" else Path(args.dashboard).read_text()
    try:
        dash = json.loads(text)
    except json.JSONDecodeError as exc:
        print("ERROR: %s is not JSON: %s" % (args.dashboard, exc), file=sys.stderr)
        return 1
    if not isinstance(dash, dict):
        print("ERROR: %s is not a JSON object" % args.dashboard, file=sys.stderr)
        return 1
    errors = sdk_errors(dash)
    errors += project_errors(dash, args.rules)
    for err in errors:
        print("ERROR: %s" % err, file=sys.stderr)
    if errors:
        print("%s: %d errors" % (args.dashboard, len(errors)), file=sys.stderr)
        return 1
    panels = list(walk_panels(dash.get("panels") or []))
    targets = sum(len(p.get("targets") or []) for p in panels)
    print(
        "%s: valid against grafana-foundation-sdk %s (%d panels, %d targets)"
        % (args.dashboard, importlib.metadata.version("grafana-foundation-sdk"), len(panels), targets)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
