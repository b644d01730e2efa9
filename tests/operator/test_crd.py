"""The CRD generated from the API models: structural, complete, and the same as the file in crds/."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from _toolmodels import tool_model

from toolcall_proxy.dialects import DIALECTS
from toolmodel_operator.api import ToolModelSpec
from toolmodel_operator.crd import crd_manifest, crd_yaml, openapi_schema, structural_schema

CRD_FILE = Path(__file__).parents[2] / "crds" / "toolmodel.dev_toolmodels.yaml"


def test_the_crd_file_is_up_to_date():
    assert CRD_FILE.exists(), "crds/toolmodel.dev_toolmodels.yaml is missing"
    assert CRD_FILE.read_text(encoding="utf-8") == crd_yaml(), (
        "crds/toolmodel.dev_toolmodels.yaml differs from the API models; regenerate it with: "
        "toolmodel crd > crds/toolmodel.dev_toolmodels.yaml"
    )


def test_the_yaml_is_the_manifest():
    assert yaml.safe_load(crd_yaml()) == crd_manifest()


def test_names_scope_and_version():
    spec = crd_manifest()["spec"]
    assert crd_manifest()["metadata"]["name"] == "toolmodels.toolmodel.dev"
    assert spec["group"] == "toolmodel.dev" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ToolModel",
        "listKind": "ToolModelList",
        "plural": "toolmodels",
        "singular": "toolmodel",
        "shortNames": ["tm"],
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns():
    (version,) = crd_manifest()["spec"]["versions"]
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert [name for name, column in columns.items() if not column.get("priority")] == [
        "Dialect",
        "TP",
        "Ready",
        "Phase",
        "Endpoint",
        "Age",
    ]
    assert columns["Dialect"]["jsonPath"] == ".status.dialect"
    assert columns["TP"]["jsonPath"] == ".spec.parallelism.tensorParallelSize"
    assert columns["Ready"]["jsonPath"] == ".status.readyReplicas"
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Endpoint"]["jsonPath"] == ".status.endpoint"
    assert columns["Age"] == {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
        "description": "Time since the ToolModel was created.",
    }
    schema = openapi_schema()
    for column in columns.values():
        node = schema
        for part in column["jsonPath"].lstrip(".").split("."):
            node = node["properties"][part] if part != "creationTimestamp" else {"type": "string"}
        assert node["type"] in (column["type"], "string"), column


def test_kubernetes_accepts_the_crd_object():
    for version in sorted({"1.31", kubernetes_validate.latest_version()}):
        kubernetes_validate.validate(crd_manifest(), version, strict=True)


# -- structural schema rules ----------------------------------------------------------------------


def nodes(schema: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def test_the_schema_is_structural():
    for path, node in nodes(openapi_schema()):
        assert not {"$ref", "$defs", "title", "allOf", "oneOf", "not", "const", "nullable"} & node.keys(), path
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            assert "type" not in node, path
            continue
        assert "anyOf" not in node, path
        assert node.get("type") in ("object", "array", "string", "integer", "number", "boolean"), path
        if node["type"] == "object":
            assert node.get("additionalProperties") is not False, path
            assert not ("properties" in node and isinstance(node.get("additionalProperties"), Mapping)), path
        if node["type"] == "array":
            assert isinstance(node.get("items"), Mapping), path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path
        if "default" in node and node["default"] is None:
            pytest.fail(f"{path}: null default")


def test_every_spec_and_status_field_is_described():
    schema = openapi_schema()
    for root in ("spec", "status"):
        for path, node in nodes(schema["properties"][root], root):
            if path.endswith(("}", "[]")) and "properties" not in node:
                continue  # the values of a map or list of scalars
            assert node.get("description"), f"{path} has no description"


def test_free_form_objects_preserve_unknown_fields():
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["gpu"]["properties"]["affinity"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["gpu"]["properties"]["tolerations"]["items"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["env"]["items"]["properties"]["valueFrom"]["x-kubernetes-preserve-unknown-fields"] is True
    status = openapi_schema()["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True  # kopf keeps its own notes there
    assert "x-kubernetes-preserve-unknown-fields" not in openapi_schema()["properties"]["spec"]


def test_enums_ranges_and_required_fields_are_kept():
    spec = openapi_schema()["properties"]["spec"]
    assert spec["required"] == ["model"]
    fields = spec["properties"]
    tool_calling = fields["toolCalling"]["properties"]
    assert tool_calling["dialect"]["enum"] == sorted(DIALECTS)
    assert tool_calling["chatTemplate"]["properties"]["preset"]["enum"] == sorted(DIALECTS)
    assert tool_calling["mode"]["enum"] == ["proxy", "native"]
    assert fields["dtype"]["enum"] == ["auto", "half", "float16", "bfloat16", "float", "float32"]
    tp = fields["parallelism"]["properties"]["tensorParallelSize"]
    assert (tp["minimum"], tp["maximum"], tp["default"]) == (1, 64, 1)
    utilization = fields["gpuMemoryUtilization"]
    assert (utilization["minimum"], utilization["exclusiveMinimum"], utilization["maximum"]) == (0, True, 1)
    serving = fields["serving"]["properties"]
    assert serving["engine"]["enum"] == ["vllm", "sim"]
    assert serving["service"]["properties"]["type"]["enum"] == ["ClusterIP", "NodePort", "LoadBalancer"]
    assert serving["replicas"]["minimum"] == 0
    assert fields["storage"]["properties"]["hfTokenSecretRef"]["required"] == ["name"]


def test_images_are_operator_defaults_not_schema_defaults():
    serving = openapi_schema()["properties"]["spec"]["properties"]["serving"]["properties"]
    assert "default" not in serving["engineImage"] and "default" not in serving["proxyImage"]
    assert "vllm/vllm-openai:v0.11.0" in serving["engineImage"]["description"]


def test_cel_rules_mirror_the_one_of_checks():
    schema = openapi_schema()
    fields = schema["properties"]["spec"]["properties"]

    def rules(node: Mapping[str, Any]) -> list[str]:
        return [rule["message"] for rule in node["x-kubernetes-validations"]]

    assert rules(fields["toolCalling"]["properties"]["chatTemplate"]) == [
        "set at most one of preset, inline or configMapRef"
    ]
    assert rules(fields["storage"]["properties"]["cache"]) == ["set exactly one of persistentVolumeClaim or emptyDir"]
    assert rules(fields["env"]["items"]) == ["set value or valueFrom, not both"]
    assert fields["env"]["maxItems"] == 256  # bounds the CEL rule's estimated cost


# -- the schema and the models agree --------------------------------------------------------------


def validator() -> jsonschema.Draft4Validator:
    # OpenAPI v3.0 schemas have draft 4's boolean exclusiveMinimum.
    return jsonschema.Draft4Validator(openapi_schema())


def test_a_minimal_object_is_valid_and_bad_ones_are_not():
    assert validator().is_valid(tool_model())
    assert not validator().is_valid(tool_model({}))
    assert not validator().is_valid(tool_model({"model": "m", "parallelism": {"tensorParallelSize": 0}}))
    assert not validator().is_valid(tool_model({"model": "m", "toolCalling": {"dialect": "gpt"}}))
    assert not validator().is_valid(tool_model({"model": "m", "gpuMemoryUtilization": 0}))
    assert validator().is_valid(tool_model({"model": "m", "serving": {"shmSize": "2Gi"}}))
    assert validator().is_valid(tool_model({"model": "m", "serving": {"resources": {"engine": {"limits": {"a": 1}}}}}))
    assert not validator().is_valid(tool_model({"model": "m", "serving": {"shmSize": 1.5}}))


def test_sizes_are_bounded_at_admission():
    assert validator().is_valid(tool_model({"model": "m", "serving": {"replicas": 1000}}))
    assert not validator().is_valid(tool_model({"model": "m", "serving": {"replicas": 10**12}}))
    # an inline template must fit the ConfigMap the operator writes it into (1 MiB)
    big = "x" * 262_145
    assert not validator().is_valid(tool_model({"model": "m", "toolCalling": {"chatTemplate": {"inline": big}}}))
    many = {f"k{i}": "v" for i in range(65)}
    assert not validator().is_valid(tool_model({"model": "m", "serving": {"podLabels": many}}))


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """What the API server does with a structural schema's defaults, applied to ``value``."""
    if not isinstance(value, dict) or "properties" not in schema:
        return value
    for name, sub in schema["properties"].items():
        if name not in value and "default" in sub:
            value[name] = copy.deepcopy(sub["default"])
        if name in value:
            value[name] = apply_defaults(value[name], sub)
    return value


def contains(whole: Any, part: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(k in whole and contains(whole[k], v) for k, v in part.items())
    return bool(whole == part)


def test_the_api_server_s_defaults_are_the_models_defaults():
    spec_schema = openapi_schema()["properties"]["spec"]
    defaulted = apply_defaults({"model": "m"}, spec_schema)
    assert defaulted["parallelism"] == {"tensorParallelSize": 1, "pipelineParallelSize": 1}
    assert defaulted["storage"] == {"cache": {"emptyDir": {}}}
    assert defaulted["serving"]["service"] == {"type": "ClusterIP", "port": 8000}
    modelled = ToolModelSpec.model_validate({"model": "m"}).model_dump(by_alias=True, exclude_none=True)
    assert contains(modelled, defaulted)
    assert ToolModelSpec.model_validate(defaulted) == ToolModelSpec.model_validate({"model": "m"})
    assert validator().is_valid({"spec": defaulted})


def test_every_schema_default_is_valid_for_its_field():
    for _path, node in nodes(openapi_schema()):
        if "default" in node:
            jsonschema.Draft4Validator({k: v for k, v in node.items() if k != "default"}).validate(node["default"])


def test_structural_schema_inlines_refs_and_optional_fields():
    schema = {
        "$defs": {
            "Inner": {
                "title": "Inner",
                "type": "object",
                "description": "inner doc",
                "properties": {"x": {"type": "string", "title": "X"}},
            }
        },
        "type": "object",
        "properties": {
            "a": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}], "default": None, "description": "field"},
            "b": {"allOf": [{"$ref": "#/$defs/Inner"}], "title": "B"},
            "c": {"type": "number", "exclusiveMinimum": 0},
            "d": {"type": "object", "additionalProperties": True},
            "e": {"type": "object", "additionalProperties": False, "properties": {"x": {"type": "string"}}},
        },
    }
    converted = structural_schema(schema)
    assert converted["properties"]["a"] == {
        "type": "object",
        "description": "field",
        "properties": {"x": {"type": "string"}},
    }
    assert converted["properties"]["b"]["description"] == "inner doc"
    assert converted["properties"]["c"] == {"type": "number", "minimum": 0, "exclusiveMinimum": True}
    assert converted["properties"]["d"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert converted["properties"]["e"] == {"type": "object", "properties": {"x": {"type": "string"}}}
