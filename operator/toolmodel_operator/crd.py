"""The ToolModel CustomResourceDefinition, generated from the pydantic models in ``api.py``.

Kubernetes wants a *structural* OpenAPI v3 schema, which pydantic's JSON Schema is not: no
``$ref``, every object and array typed, ``nullable`` instead of ``anyOf: [..., null]``,
``exclusiveMinimum`` as a boolean next to ``minimum``, free-form objects marked
``x-kubernetes-preserve-unknown-fields``. ``structural_schema`` does that conversion.

``crds/toolmodel.dev_toolmodels.yaml`` is ``crd_yaml()`` written out (``toolmodel crd``); a test
fails when the two differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .api import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, ToolModelSpec, ToolModelStatus

__all__ = ["CRD_NAME", "crd_manifest", "crd_yaml", "openapi_schema", "structural_schema"]

CRD_NAME = f"{PLURAL}.{GROUP}"

# Keywords with no meaning (or no place) in a Kubernetes schema.
_DROPPED = frozenset({"title", "$defs", "$schema"})


def structural_schema(schema: Mapping[str, Any], definitions: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A pydantic (JSON Schema 2020-12) schema as a Kubernetes structural OpenAPI v3 schema."""
    definitions = schema.get("$defs", {}) if definitions is None else definitions
    node = _inline(schema, definitions)
    converted: dict[str, Any] = {}
    for keyword, value in node.items():
        if keyword in _DROPPED or (keyword == "default" and value is None):
            continue
        if keyword == "properties":
            converted["properties"] = {name: structural_schema(sub, definitions) for name, sub in value.items()}
        elif keyword == "items":
            converted["items"] = structural_schema(value, definitions)
        elif keyword == "additionalProperties":
            if value is True:
                converted["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, Mapping):
                converted["additionalProperties"] = structural_schema(value, definitions)
            # False: Kubernetes forbids it next to properties and prunes unknown fields anyway.
        elif keyword == "anyOf":
            converted["anyOf"] = [structural_schema(branch, definitions) for branch in value]
        elif keyword == "exclusiveMinimum":
            converted["minimum"] = value
            converted["exclusiveMinimum"] = True
        elif keyword == "exclusiveMaximum":
            converted["maximum"] = value
            converted["exclusiveMaximum"] = True
        else:
            converted[keyword] = value
    if converted.get("type") == "object" and not {"properties", "additionalProperties"} & converted.keys():
        converted["x-kubernetes-preserve-unknown-fields"] = True
    return converted


def _inline(schema: Mapping[str, Any], definitions: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with its ``$ref``, single ``allOf`` and ``anyOf: [X, null]`` merged into one node.

    The outer node's own keywords (description, default) win over the referenced definition's,
    so a field's description replaces its class docstring.
    """
    node = dict(schema)
    inner: dict[str, Any] | None = None
    if "$ref" in node:
        inner = dict(definitions[node.pop("$ref").rsplit("/", 1)[-1]])
    elif "allOf" in node and len(node["allOf"]) == 1:
        inner = dict(node.pop("allOf")[0])
    elif "anyOf" in node:
        branches = [branch for branch in node["anyOf"] if branch != {"type": "null"}]
        if len(branches) < len(node["anyOf"]):
            # Optional: not listed as required; a null is pruned by the API server, which is
            # the same as leaving the field out.
            del node["anyOf"]
            if len(branches) == 1:
                inner = dict(branches[0])
            else:
                node["anyOf"] = branches
    if inner is None:
        return node
    return _inline({**_inline(inner, definitions), **node}, definitions)


def openapi_schema() -> dict[str, Any]:
    """The whole ToolModel object's openAPIV3Schema."""
    spec = structural_schema(ToolModelSpec.model_json_schema(by_alias=True, mode="validation"))
    status = structural_schema(ToolModelStatus.model_json_schema(by_alias=True, mode="validation"))
    return {
        "type": "object",
        "description": "A model served by vLLM with working OpenAI tool calling: the operator runs a Deployment "
        "(the engine and a tool-call proxy sidecar; a LeaderWorkerSet for a model spread over several nodes), a "
        "Service and a chat-template ConfigMap for it, and on request an autoscaler and an InferencePool.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "toolmodel.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ToolModel"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        # No CEL rule on metadata.name: its length is unbounded for the cost estimator, so a
        # regex over it may exceed the CRD's CEL budget. The renderer checks the name instead.
    }


def crd_manifest() -> dict[str, Any]:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition for ToolModel."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "toolmodel", "app.kubernetes.io/component": "crd"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


def _printer_columns() -> list[dict[str, Any]]:
    def column(name: str, type_: str, path: str, description: str, priority: int = 0) -> dict[str, Any]:
        entry = {"name": name, "type": type_, "jsonPath": path, "description": description}
        return {**entry, "priority": priority} if priority else entry

    return [
        column("Dialect", "string", ".status.dialect", "The tool-call dialect in use."),
        column("TP", "integer", ".spec.parallelism.tensorParallelSize", "Tensor-parallel size: GPUs per layer."),
        column("Ready", "integer", ".status.readyReplicas", "Pods ready to serve."),
        column("Phase", "string", ".status.phase", "A one-word summary of the conditions."),
        column("Endpoint", "string", ".status.endpoint", "The OpenAI base URL inside the cluster."),
        column("Model", "string", ".spec.model", "The model served.", priority=1),
        column("Age", "date", ".metadata.creationTimestamp", "Time since the ToolModel was created."),
    ]


_HEADER = (
    "# Generated from operator/toolmodel_operator/api.py; do not edit.\n"
    "# Regenerate with: toolmodel crd > crds/toolmodel.dev_toolmodels.yaml\n"
)


def crd_yaml() -> str:
    """The CRD as the YAML file kept in ``crds/``."""
    return _HEADER + "---\n" + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120, allow_unicode=True)
