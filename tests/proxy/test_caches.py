"""The caches keyed by what clients send are bounded by entries and by bytes, and say so in /metrics."""

from __future__ import annotations

from aiohttp import ClientSession

from toolcall_proxy.caching import BoundedCache
from toolcall_proxy.server import validation


def test_the_least_recently_used_entry_goes_first_when_the_bytes_run_out():
    cache: BoundedCache[str] = BoundedCache("test", max_entries=100, max_bytes=80, listed=False)
    made: list[str] = []

    def make(key: str) -> str:
        made.append(key)
        return key.upper()

    for key in ("a", "b", "c", "d"):
        for _ in range(2):  # kept the second time
            assert cache.get(key, lambda key=key: make(key), 20) == key.upper()
    cache.get("a", lambda: make("a"), 20)  # a hit: "a" is now the most recent
    cache.get("e", lambda: make("e"), 20)
    cache.get("e", lambda: make("e"), 20)  # 100 bytes: "b", the least recent, goes
    assert made == ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"]
    assert (len(cache), cache.bytes, cache.evictions) == (4, 80, 1)
    cache.get("b", lambda: make("b"), 20)
    assert made[-1] == "b"  # made again


def test_a_key_asked_for_once_leaves_nothing_but_its_hash():
    cache: BoundedCache[str] = BoundedCache("test", max_entries=10, max_bytes=1000, listed=False)
    made: list[str] = []
    for number in range(100):  # a flood of keys, each sent once
        cache.get(f"k{number}", lambda: made.append("x") or "value", 10)
    assert len(cache) == 0 and cache.bytes == 0
    assert len(cache._seen_once) <= 40  # and only a bounded number of hashes
    cache.get("k99", lambda: "value", 10)  # asked for again while remembered: kept
    assert len(cache) == 1


def test_an_entry_that_would_take_a_quarter_of_the_budget_is_made_but_not_kept():
    cache: BoundedCache[int] = BoundedCache("test", max_entries=10, max_bytes=100, listed=False)
    assert cache.get("huge", lambda: 1, 26) == 1
    assert len(cache) == 0 and cache.bytes == 0


def test_distinct_large_tools_lists_stay_within_the_budget():
    cache = validation._TOOLS_LISTS
    cache.clear()
    description = "d" * 50_000
    for number in range(200):  # each list ~50 KB, sent twice: kept, the oldest dropped as the budget fills
        tool = {"type": "function", "function": {"name": f"f{number}", "description": description}}
        for _ in range(2):
            validation.parse_tool_request({"messages": [{"role": "user", "content": "hi"}], "tools": [tool]})
    assert cache.bytes <= cache.max_bytes
    assert cache.evictions > 0 and len(cache) < 200


async def test_metrics_show_each_cache(stack):
    async with ClientSession() as session, session.get(stack.url + "/metrics") as response:
        text = await response.text()
    for cache in ("tool_schemas", "tools_lists", "template_tojson"):
        assert f'toolmodel_proxy_cache_entries{{cache="{cache}"}}' in text
        assert f'toolmodel_proxy_cache_bytes{{cache="{cache}"}}' in text
        assert f'toolmodel_proxy_cache_evictions_total{{cache="{cache}"}}' in text
