"""Schemathesis hooks for `gateway/tests/schemathesis.rs`.

JSON Schema cannot state three of the rules the server applies, each
written in the document's descriptions: an integer must be written as a
plain integer literal (`1685`, not `1685.0`, which JSON Schema counts as an
integer too), a new item's `name` must be in Unicode Normalization Form C,
and its `signature` must be a real Ed25519 signature by a trusted key over
the item. Data that schemathesis generates as *valid* from the document
breaks them by chance (a random string is rarely a signature), and the
server rightly refuses it with 400. So valid requests are brought within
those rules here, and only valid ones: integral numbers are written as
integers, a new item's name is normalized, and a generated signature is
dropped (no schema can generate a valid one). Invalid data is left exactly
as generated.
"""

import unicodedata

import schemathesis
from schemathesis import GenerationMode

# The item schema's bound on `name`, in code points.
MAX_NAME = 200


def _plain_integers(value):
    """`value` with every integral float written as an integer."""
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _plain_integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_integers(item) for item in value]
    return value


def _new_item(body):
    """A generated new item within the rules the schema cannot state."""
    body = dict(body)
    name = body.get("name")
    if isinstance(name, str):
        # NFC lengthens a few characters: keep the schema's bound.
        body["name"] = unicodedata.normalize("NFC", unicodedata.normalize("NFC", name)[:MAX_NAME])
    body.pop("signature", None)
    return body


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or meta.generation.mode != GenerationMode.POSITIVE:
        return case
    if isinstance(case.query, dict):
        case.query = _plain_integers(case.query)
    if isinstance(case.path_parameters, dict):
        case.path_parameters = _plain_integers(case.path_parameters)
    if isinstance(case.body, (dict, list)):
        case.body = _plain_integers(case.body)
    is_create = case.operation.method.upper() == "POST" and case.operation.path == "/items"
    if is_create and isinstance(case.body, dict):
        case.body = _new_item(case.body)
    return case
