"""`toolmodel render` and `toolmodel crd`, called as functions."""

from __future__ import annotations

import io

import pytest
import yaml
from _toolmodels import EXAMPLES, tool_model

from toolcall_proxy.dialects import DIALECTS
from toolmodel_operator.commands import crd_main, render_main
from toolmodel_operator.crd import crd_yaml
from toolmodel_operator.render import render


@pytest.fixture
def write(tmp_path):
    def write(name: str, *documents: object) -> str:
        path = tmp_path / name
        path.write_text(yaml.safe_dump_all(documents), encoding="utf-8")
        return str(path)

    return write


def test_render_prints_the_manifests_as_a_yaml_stream(write, capsys):
    path = write("glm.yaml", tool_model(uid=None))
    assert render_main(["-f", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("---\n# Source: ")
    assert list(yaml.safe_load_all(out)) == render(tool_model(uid=None))
    assert f"# Source: {path} (ToolModel demo)" in out
    assert "&id" not in out and "*id" not in out


def test_the_chat_template_is_printed_as_a_block(write, capsys):
    assert render_main(["-f", write("glm.yaml", tool_model())]) == 0
    out = capsys.readouterr().out
    first_line = DIALECTS["chatglm3"].template.splitlines()[0]
    assert "chat-template.jinja: |" in out and f"    {first_line}" in out


def test_render_reads_several_files_and_documents_and_skips_empty_ones(write, capsys):
    first = write("a.yaml", tool_model(name="a"), None, tool_model(name="b"))
    second = write("c.yaml", tool_model({"model": "Qwen/Qwen2.5-7B-Instruct"}, name="c"))
    assert render_main(["-f", first, "--filename", second]) == 0
    documents = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in documents if d["kind"] == "Deployment"] == ["a", "b", "c"]


def test_render_reads_standard_input(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(yaml.safe_dump(tool_model(name="piped"))))
    assert render_main(["-f", "-"]) == 0
    assert "name: piped" in capsys.readouterr().out


def test_the_namespace_comes_from_the_flag_then_the_object_then_default(write, capsys):
    path = write("glm.yaml", tool_model(namespace="ml"))
    assert render_main(["-f", path, "--namespace", "prod"]) == 0
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(capsys.readouterr().out)} == {"prod"}
    assert render_main(["-f", path]) == 0
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(capsys.readouterr().out)} == {"ml"}
    assert render_main(["-f", write("bare.yaml", tool_model(namespace=None))]) == 0
    assert {d["metadata"]["namespace"] for d in yaml.safe_load_all(capsys.readouterr().out)} == {"default"}


def test_an_invalid_spec_exits_2_naming_the_field_and_prints_nothing(write, capsys):
    good = write("good.yaml", tool_model(name="good"))
    bad = write("bad.yaml", tool_model({"model": "THUDM/chatglm3-6b", "toolCalling": {"mode": "native"}}))
    assert render_main(["-f", good, "-f", bad]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"toolmodel render: {bad} (document 1): invalid ToolModel: spec.toolCalling.mode")


def test_the_gpus_per_node_limit_is_a_flag(write, capsys):
    # 12 GPUs: more than a node of 8 has, and no whole number of such nodes.
    path = write("big.yaml", tool_model({"model": "THUDM/chatglm3-6b", "parallelism": {"tensorParallelSize": 12}}))
    assert render_main(["-f", path]) == 2
    assert "spec.parallelism" in capsys.readouterr().err
    assert render_main(["-f", path, "--max-gpus-per-node", "16"]) == 0
    assert "kind: Deployment" in capsys.readouterr().out
    assert render_main(["-f", path, "--max-gpus-per-node", "6"]) == 0
    assert "kind: LeaderWorkerSet" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("kind: Deployment\nmetadata: {name: x}\n", "expected a ToolModel, got 'Deployment'"),
        ("- a list\n", "expected a ToolModel, got 'list'"),
        ("a: [unclosed\n", "not valid YAML"),
    ],
)
def test_input_that_is_no_toolmodel_exits_2(tmp_path, capsys, content, words):
    path = tmp_path / "x.yaml"
    path.write_text(content, encoding="utf-8")
    assert render_main(["-f", str(path)]) == 2
    assert words in capsys.readouterr().err


def test_a_missing_file_exits_2(tmp_path, capsys):
    assert render_main(["-f", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_every_example_renders(capsys):
    assert render_main([arg for path in EXAMPLES for arg in ("-f", str(path))]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out)]
    assert kinds.count("Deployment") + kinds.count("LeaderWorkerSet") == len(EXAMPLES)


def test_crd_prints_the_crd(capsys):
    assert crd_main([]) == 0
    assert capsys.readouterr().out == crd_yaml()


def test_the_operator_refuses_a_scale_out_kind_it_does_not_know(capsys):
    from toolmodel_operator.run import operator_main

    assert operator_main(["--scale-out-kinds", "LeaderWorkerSet,StatefulSet"]) == 2
    out = capsys.readouterr().out
    assert "--scale-out-kinds: no such kind StatefulSet" in out
    assert "LeaderWorkerSet, ScaledObject, HorizontalPodAutoscaler, InferencePool" in out
