"""Every dialect's prompt reaches the engine in the form its tokenizer needs: the family's prefix
(BOS, ``[gMASK]<sop>``, ...) exactly once, whoever writes it; and the tokenizer a token-id
dialect needs is found, waited for, or refused, never guessed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from fake_engine import serving

from toolcall_proxy.dialects import DIALECTS, get_dialect
from toolcall_proxy.server.metrics import ProxyMetrics
from toolcall_proxy.server.settings import ProxySettings
from toolcall_proxy.server.tokenizer import TokenizerLoader
from toolcall_proxy.server.toolpath import ToolPath
from toolcall_proxy.server.validation import parse_tool_request
from toolcall_proxy.tokens import PromptTokenizer, TokenizerError

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}
CONVERSATION = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Weather in Paris?"},
]


def upstream_payload(dialect_name: str, tokenizer: PromptTokenizer | None) -> dict[str, Any]:
    path = ToolPath(get_dialect(dialect_name), ProxySettings(dialect=dialect_name), ProxyMetrics())
    path.tokenizer = tokenizer
    request = parse_tool_request({"model": "m", "messages": CONVERSATION, "tools": [WEATHER]})
    return path.upstream_call(request).payload


@pytest.mark.parametrize("name", sorted(DIALECTS))
def test_the_family_prefix_reaches_the_model_exactly_once(name, chatglm3_tokenizer_dir):
    dialect = get_dialect(name)
    tokenizer = None
    if dialect.token_layout is not None:
        tokenizer = PromptTokenizer.load(chatglm3_tokenizer_dir, dialect.token_layout)
    payload = upstream_payload(name, tokenizer)
    prefix = dialect.tokenizer_prefix
    if dialect.transport == "chat":  # the model's own template on vLLM's chat path: not ours to build
        assert "prompt" not in payload
    elif dialect.prompt_form == "token_ids":
        assert tokenizer is not None
        prefix_ids = [tokenizer.control_ids["[gMASK]"], tokenizer.control_ids["sop"]]
        assert payload["prompt"][:2] == prefix_ids
        assert prefix_ids[0] not in payload["prompt"][2:]  # and never again
    elif dialect.prompt_form == "text_without_prefix":
        # the template writes it; the engine's tokenizer must not add it again
        assert payload["add_special_tokens"] is False
        assert payload["prompt"].startswith(prefix) and payload["prompt"].count(prefix) == 1
    else:
        # the engine's tokenizer adds it (add_special_tokens defaults to true on /v1/completions)
        assert payload.get("add_special_tokens", True) is True
        assert not prefix or prefix not in payload["prompt"]
    if "prompt" in payload:
        assert payload["spaces_between_special_tokens"] is False  # markers come back as written


@pytest.mark.parametrize(
    "name", sorted(n for n, d in DIALECTS.items() if d.tokenizer_prefix and "bos_token" in d.template)
)
def test_the_template_vllm_renders_for_its_chat_path_writes_the_prefix_once(name):
    # vLLM's chat path renders the mounted template with the tokenizer's bos_token and adds no
    # special tokens itself: the template's one prefix is the only one.
    dialect = get_dialect(name)
    from toolcall_proxy.rendering import render

    text = render(
        dialect.template,
        messages=CONVERSATION,
        tools=None,
        add_generation_prompt=True,
        bos_token=dialect.tokenizer_prefix,
        eos_token="",
    )
    assert text.startswith(dialect.tokenizer_prefix) and text.count(dialect.tokenizer_prefix) == 1


def test_glm4_gets_its_prefix_once_from_the_template():
    payload = upstream_payload("glm4", None)
    assert payload["prompt"].startswith("[gMASK]<sop><|system|>")
    assert payload["add_special_tokens"] is False


# -- finding the tokenizer -----------------------------------------------------------------------

LAYOUT = get_dialect("chatglm3").token_layout
assert LAYOUT is not None


async def load(source: str, *, waits: bool = False, **options: Any) -> tuple[TokenizerLoader, list[str]]:
    """A started loader, once it has loaded or failed (or, when it ``waits``, has had a look)."""
    failures: list[str] = []
    loader = TokenizerLoader(LAYOUT, source, on_failure=failures.append, **options)
    loader.start()
    for _ in range(30 if waits else 500):
        if loader.tokenizer is not None or failures:
            break
        await asyncio.sleep(0.01)
    return loader, failures


async def test_a_directory_is_loaded_and_checked(chatglm3_tokenizer_dir):
    loader, failures = await load(str(chatglm3_tokenizer_dir))
    assert failures == [] and loader.tokenizer is not None
    assert loader.tokenizer.control_ids["<|observation|>"] == 64797
    await loader.close()


async def test_another_familys_tokenizer_is_refused_with_the_reason(tmp_path, chatglm3_tokenizer_dir):
    (tmp_path / "tokenizer.model").write_bytes((chatglm3_tokenizer_dir / "tokenizer.model").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    loader, failures = await load(str(tmp_path))
    assert loader.tokenizer is None
    assert failures and "'LlamaTokenizer', not 'ChatGLMTokenizer'" in failures[0]


async def test_a_tokenizer_whose_ids_do_not_fit_the_model_is_refused(tmp_path):
    from toolcall_proxy.tokens import train_demo_tokenizer

    train_demo_tokenizer(tmp_path, LAYOUT)
    (tmp_path / "config.json").write_text(json.dumps({"padded_vocab_size": 100}))
    with pytest.raises(TokenizerError, match="past the model's 100 embeddings"):
        PromptTokenizer.load(tmp_path, LAYOUT)


async def test_no_tokenizer_given_is_a_failure_that_says_how_to_give_one():
    _, failures = await load("")
    assert failures and "--tokenizer" in failures[0] and "TOOLMODEL_TOKENIZER" in failures[0]


async def test_a_model_id_is_found_in_the_cache_the_engine_downloads_into(
    tmp_path, monkeypatch, chatglm3_tokenizer_dir, engine_download
):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no download
    loader, failures = await load("THUDM/chatglm3-6b", waits=True, download_dir=tmp_path / "own")
    assert loader.tokenizer is None and not failures
    assert "waiting for tokenizer.model of THUDM/chatglm3-6b" in loader.state
    for _ in range(300):
        if "the download failed" in loader.state:
            break
        await asyncio.sleep(0.01)
    assert "the download failed" in loader.state
    # the engine finishes its download
    engine_download("THUDM/chatglm3-6b", chatglm3_tokenizer_dir, ["tokenizer.model", "tokenizer_config.json"])
    for _ in range(300):
        if loader.tokenizer is not None:
            break
        await asyncio.sleep(0.01)
    assert loader.tokenizer is not None and loader.state == "loaded"
    await loader.close()


async def test_a_tokenizer_that_never_comes_ends_the_wait_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    _, failures = await load("THUDM/chatglm3-6b", wait=0.0, download_dir=tmp_path / "own")
    assert failures and "gave up after 0 s" in failures[0]


async def test_the_hub_is_asked_with_the_token_when_nothing_is_cached(tmp_path, monkeypatch, chatglm3_tokenizer_dir):
    asked: list[tuple[str, str | None]] = []

    async def resolve(request: web.Request) -> web.StreamResponse:
        asked.append((request.path, request.headers.get("Authorization")))
        name = request.match_info["file"]
        if request.headers.get("Authorization") != "Bearer hf_secret":
            return web.Response(status=401)
        if not (chatglm3_tokenizer_dir / name).is_file():
            return web.Response(status=404)
        return web.Response(body=(chatglm3_tokenizer_dir / name).read_bytes())

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    async with serving("/{org}/{name}/resolve/{revision}/{file}", resolve) as hub_url:
        monkeypatch.setenv("HF_ENDPOINT", hub_url)
        loader, failures = await load("THUDM/chatglm3-6b", revision="v1.0", download_dir=tmp_path / "own")
    assert not failures and loader.tokenizer is not None
    assert ("/THUDM/chatglm3-6b/resolve/v1.0/tokenizer.model", "Bearer hf_secret") in asked
    assert Path(loader.tokenizer.source) == tmp_path / "own" / "THUDM--chatglm3-6b" / "v1.0"
    await loader.close()


async def test_until_the_tokenizer_is_loaded_the_proxy_is_not_ready_and_says_why(stack_with, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    async with stack_with(dialect="chatglm3", tokenizer="THUDM/chatglm3-6b") as stack, ClientSession() as session:
        async with session.get(stack.url + "/health") as response:
            health = await response.json()
            assert response.status == 503
        assert health["status"] == "starting" and "waiting for tokenizer.model" in health["tokenizer"]
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(stack.url + "/v1/chat/completions", json=body) as response:
            error = await response.json()
            assert response.status == 503
        assert "not ready" in error["error"]["message"] and "tokenizer.model" in error["error"]["message"]
        assert stack.engine.requests == []  # nothing went to the engine as text


async def test_offline_the_proxy_only_watches_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    loader, failures = await load("THUDM/chatglm3-6b", waits=True, download_dir=tmp_path / "own")
    await asyncio.sleep(0.6)
    assert not failures and "waiting for tokenizer.model" in loader.state
    assert "download" not in loader.state.split("(the engine downloads it)")[1]
    assert not (tmp_path / "own").exists()
    await loader.close()


async def test_a_directory_is_waited_for_until_the_simulated_engine_writes_it(tmp_path, chatglm3_tokenizer_dir):
    folder = tmp_path / "toolmodel-sim" / "THUDM--chatglm3-6b"
    loader, failures = await load(str(folder), waits=True)
    assert loader.tokenizer is None and not failures
    assert loader.state == f"waiting for tokenizer.model in {folder} (the simulated engine writes it there at start)"
    folder.mkdir(parents=True)
    (folder / "tokenizer.model").write_bytes((chatglm3_tokenizer_dir / "tokenizer.model").read_bytes())
    for _ in range(300):
        if loader.tokenizer is not None:
            break
        await asyncio.sleep(0.01)
    assert loader.tokenizer is not None
    await loader.close()
