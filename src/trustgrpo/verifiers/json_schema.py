"""``json_schema``: the answer is JSON that validates against a JSON Schema.

>>> v = JsonSchemaVerifier(schema={"type": "object", "required": ["x"]})
>>> [o.status for o in v.score([_s('{"x": 1}'), _s('{"y": 1}'), _s('{"x": 1')])]
['correct', 'incorrect', 'incorrect']

Parsing is strict: ``NaN``/``Infinity`` and duplicate keys are rejected (a duplicate key lets
a validator and a consumer read different values). With ``match_reference`` the parsed value
must also equal the reference JSON, compared as canonical text so ``1``, ``1.0`` and
``true`` stay distinct. The validator follows the schema's ``$schema`` (Draft 2020-12 when
absent); the schema is checked when the run file is loaded. Needs ``jsonschema``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trustgrpo.verifiers.base import Sample
from trustgrpo.verifiers.core import BaseVerifier, Check, abstain, correct, incorrect
from trustgrpo.verifiers.extract import DEFAULT_STOPS, cut_at_stop, tag_contents

_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)
#: Validation errors kept in an outcome's details.
MAX_ERRORS = 5


@dataclass(frozen=True)
class JsonSchemaParams:
    """Parameters of ``json_schema``."""

    schema: Mapping[str, Any] | None = None
    """The JSON Schema, inline (a TOML table)."""
    schema_file: str = ""
    """Or a file holding the schema (its content is part of the version)."""
    extract: Literal["full", "code_block", "answer_tag"] = "full"
    """Where the JSON is: the whole completion, the one fenced code block, or the one
    ``<answer>`` tag."""
    match_reference: bool = False
    """Also require the value to equal the reference JSON."""
    stop: tuple[str, ...] = DEFAULT_STOPS
    """The completion is cut at the first of these strings before extraction."""

    def problems(self) -> list[str]:
        if (self.schema is None) == (not self.schema_file):
            return ["schema: expected exactly one of schema (a table) or schema_file (a path)"]
        try:
            schema = load_schema(self)
        except (OSError, ValueError) as e:
            return [f"schema_file: cannot read {self.schema_file!r}: {e}"]
        try:
            from jsonschema.exceptions import SchemaError
            from jsonschema.validators import validator_for
        except ImportError:
            return [
                "schema: the json_schema verifier needs the jsonschema package "
                "(pip install jsonschema)"
            ]
        try:
            validator_for(schema).check_schema(schema)
        except SchemaError as e:
            where = "/".join(str(p) for p in e.path) or "(root)"
            return [f"schema: not a valid JSON Schema at {where}: {e.message}"]
        return []


def load_schema(p: JsonSchemaParams) -> dict[str, Any]:
    """The schema, from the parameters or the file."""
    if p.schema is not None:
        return dict(p.schema)
    data = json.loads(Path(p.schema_file).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    return data


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(text: str) -> Any:
    """``json.loads`` that rejects duplicate keys and NaN/Infinity.

    >>> strict_loads('{"a": 1, "a": 2}')
    Traceback (most recent call last):
    ...
    ValueError: duplicate key 'a'
    """
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def canonical(value: Any) -> str:
    """Sorted-key compact JSON text (equal values, equal text; ``1`` and ``1.0`` differ)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class JsonSchemaVerifier(BaseVerifier[JsonSchemaParams]):
    """The answer parses as JSON and validates against the schema."""

    type = "json_schema"
    Params = JsonSchemaParams
    code_modules = ("trustgrpo.verifiers.extract",)
    dependencies = ("jsonschema",)

    def setup(self) -> None:
        from jsonschema.validators import validator_for

        self._schema = load_schema(self.params)
        self._validator = validator_for(self._schema)(self._schema)

    def version_params(self) -> dict[str, Any]:
        """The parameters and the schema's own hash (so editing a schema file is a new version)."""
        out = super().version_params()
        out["schema_sha256"] = hashlib.sha256(canonical(self._schema).encode()).hexdigest()
        return out

    def _extract(self, completion: str) -> tuple[str | None, str]:
        text = cut_at_stop(completion, self.params.stop)
        if self.params.extract == "full":
            return (text.strip() or None), "empty completion"
        found = _FENCE.findall(text) if self.params.extract == "code_block" else tag_contents(text)
        distinct = list(dict.fromkeys(f.strip() for f in found))
        if len(distinct) != 1:
            what = "code block" if self.params.extract == "code_block" else "<answer>"
            return None, f"expected one {what}, found {len(distinct)}"
        return distinct[0], ""

    def check(self, sample: Sample) -> Check:
        text, reason = self._extract(sample.completion)
        if text is None:
            return incorrect(reason)
        try:
            value = strict_loads(text)
        except (ValueError, RecursionError) as e:
            return incorrect(f"not JSON: {e}"[:300])
        errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            msgs = [
                f"{'/'.join(str(p) for p in e.path) or '(root)'}: {e.message}"[:300]
                for e in errors[:MAX_ERRORS]
            ]
            return incorrect("does not match the schema", errors=msgs, error_count=len(errors))
        if self.params.match_reference:
            if sample.reference is None:
                return abstain("no reference answer")
            try:
                ref = strict_loads(sample.reference)
            except ValueError as e:
                return abstain(f"reference is not JSON: {e}"[:300])
            if canonical(value) != canonical(ref):
                return incorrect("valid, but differs from the reference")
        return correct()

    def gold_completion(self, sample: Sample) -> str | None:
        """The reference, when it is JSON (written where this verifier looks)."""
        ref = sample.reference
        if ref is None:
            return None
        try:
            strict_loads(ref)
        except ValueError:
            return None
        if self.params.extract == "code_block":
            return f"```json\n{ref}\n```"
        if self.params.extract == "answer_tag":
            return f"<answer>{ref}</answer>"
        return ref

    def canaries(self, sample: Sample) -> list[tuple[str, str]]:
        """Empty, not JSON, NaN, and the reference cut short."""
        out = [*super().canaries(sample), ("not JSON", "{"), ("NaN", "NaN")]
        gold = self.gold_completion(sample)
        if gold and len(sample.reference or "") > 1:
            ref = sample.reference or ""
            out.append(("truncated", gold.replace(ref, ref[:-1])))
        return out


def _s(completion: str) -> Sample:
    """A one-off sample (for the examples)."""
    return Sample("p", 0, 0, "", completion, None)


__all__ = ["JsonSchemaParams", "JsonSchemaVerifier", "canonical", "strict_loads"]
