"""The published CRDs of the projects the operator writes objects for (LeaderWorkerSet, KEDA's
ScaledObject, the Gateway API Inference Extension's InferencePool), from ``shared/crds/`` beside the
repository (``../shared``). The tests that use them fail, not skip, when it is missing.

``check`` validates a rendered object as the API server would: against the served version's
``openAPIV3Schema`` (OpenAPI 3.0, so draft 4: a boolean ``exclusiveMinimum``), and also refuses any
field the schema does not know (the API server would prune it without a word, so a typo would be lost).
Pod templates inside are also checked as Kubernetes' own PodTemplate, under kubernetes-validate.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CRDS = SHARED / "crds"
FILES = {
    ("leaderworkerset.x-k8s.io", "LeaderWorkerSet"): "leaderworkerset.x-k8s.io_leaderworkersets.yaml",
    ("keda.sh", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("inference.networking.k8s.io", "InferencePool"): "inference.networking.k8s.io_inferencepools.yaml",
}


def is_custom(manifest: Mapping[str, Any]) -> bool:
    return (str(manifest["apiVersion"]).split("/")[0], manifest["kind"]) in FILES


@functools.cache
def published_crd(group: str, kind: str) -> dict[str, Any]:
    """The CRD as published (shared and cached: copy before changing it); fails when shared/ is missing."""
    path = CRDS / FILES[(group, kind)]
    assert path.is_file(), (
        f"{path} is missing: clone shared/ beside the repository (its published CRDs are the contract)"
    )
    crd: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind, path
    return crd


def schema_of(api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the CRD version ``api_version`` names; it must be served."""
    group, _, version = api_version.partition("/")
    served = {v["name"]: v for v in published_crd(group, kind)["spec"]["versions"] if v.get("served")}
    assert version in served, f"{kind} {api_version}: the CRD serves only {sorted(served)}"
    schema: dict[str, Any] = served[version]["schema"]["openAPIV3Schema"]
    return schema


def unknown_fields(value: Any, schema: Mapping[str, Any], path: str = "") -> Iterator[str]:
    """Fields of ``value`` that ``schema`` would prune."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, Mapping) and schema.get("type") == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if properties is not None and key in properties:
                yield from unknown_fields(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, Mapping):
                yield from unknown_fields(item, extra, f"{path}.{key}")
            elif properties is not None and not extra:
                yield f"{path}.{key}"
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}[{index}]")


def pod_templates(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    if manifest["kind"] == "LeaderWorkerSet":
        group = manifest["spec"]["leaderWorkerTemplate"]
        return [group[key] for key in ("leaderTemplate", "workerTemplate") if key in group]
    return []


def check(manifest: Mapping[str, Any]) -> None:
    """Raises unless the API server would take ``manifest`` (an object of one of the CRDs) as it is."""
    schema = schema_of(manifest["apiVersion"], manifest["kind"])
    jsonschema.Draft4Validator(schema).validate(manifest)
    body = {key: value for key, value in manifest.items() if key != "metadata"}  # ObjectMeta: the server's own
    pruned = list(unknown_fields(body, schema))
    assert not pruned, f"{manifest['kind']} fields its CRD does not know (they would be dropped): {pruned}"
    for template in pod_templates(manifest):
        pod_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}
        kubernetes_validate.validate(pod_template, kubernetes_validate.latest_version(), strict=True)


def check_any(manifest: Mapping[str, Any]) -> None:
    """A CRD's object against its CRD, a built-in one under kubernetes-validate (strict)."""
    if is_custom(manifest):
        check(manifest)
    else:
        kubernetes_validate.validate(dict(manifest), kubernetes_validate.latest_version(), strict=True)
