"""The proxy's benchmarks: figures A-E against direct, nginx and LiteLLM, on one 2-core machine.

    .venv/bin/python hack/bench/run.py [--quick] [--skip litellm,nginx] [--only A,B,C,D] [--json PATH]

Core 0 runs the proxy under test; core 1 runs the load generators and the fake upstream. Every
target is measured in the same run against the same upstream. Everything is on 127.0.0.1, every
load loop is bounded in count and time. Prints a Markdown table and writes JSON
(``bench-results/latest.json``). See hack/bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DEPS = HERE / ".deps"
LITELLM_VENV = HERE / ".venv-litellm"
sys.path.insert(0, str(HERE))
if DEPS.is_dir():
    sys.path.append(str(DEPS))

import aiohttp  # noqa: E402
import fake_upstream  # noqa: E402
import orjson  # noqa: E402

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]

PROXY_CORE = 0
LOAD_CORE = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
TOKEN_EVENT = re.compile(rb'"(?:content|text)":\s*"[^"]|"tool_calls"')
INSTALL = {
    "nginx": "apt-get install -y nginx (or: bash hack/bench/setup.sh)",
    "wrk": "apt-get install -y wrk (or: bash hack/bench/setup.sh)",
    "litellm": f"bash hack/bench/setup.sh (LiteLLM proxy into {LITELLM_VENV.relative_to(ROOT)})",
    "partial_json_parser": "bash hack/bench/setup.sh (partial-json-parser into hack/bench/.deps)",
}


# -- durations --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    warmup: float
    open_loop: float  # seconds of fixed-rate load per target
    rate: float  # requests/s of the open loop
    wrk: float  # seconds per wrk run
    wrk_connections: tuple[int, ...]
    stream_seconds: float
    stream_concurrency: int
    stream_chunks: int
    itl_ms: float
    ttft_ms: float
    parser_min_seconds: float
    reparse_budget: float  # seconds of re-parse timing per size at most (the rest is sampled)
    e2e_min_seconds: float
    streams_held: int
    tools: int = 20
    toolmodels: int = 1000


FULL = Plan(
    warmup=1.0,
    open_loop=10.0,
    rate=200.0,
    wrk=5.0,
    wrk_connections=(16, 64),
    stream_seconds=10.0,
    stream_concurrency=16,
    stream_chunks=200,
    itl_ms=5.0,
    ttft_ms=10.0,
    parser_min_seconds=0.5,
    reparse_budget=4.0,
    e2e_min_seconds=3.0,
    streams_held=1000,
)
QUICK = Plan(
    warmup=0.3,
    open_loop=2.0,
    rate=200.0,
    wrk=2.0,
    wrk_connections=(32,),
    stream_seconds=2.0,
    stream_concurrency=8,
    stream_chunks=100,
    itl_ms=5.0,
    ttft_ms=10.0,
    parser_min_seconds=0.1,
    reparse_budget=0.5,
    e2e_min_seconds=0.5,
    streams_held=1000,
    toolmodels=100,
)


# -- processes --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pin(core: int) -> Callable[[], None]:
    def apply() -> None:
        os.sched_setaffinity(0, {core})

    return apply


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    todo.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split())
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process and its descendants, from /proc/<pid>/stat."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / CLK_TCK


def own_seconds() -> float:
    """CPU seconds of this process and its reaped children (wrk, py-spy, the stopped services)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def wait_idle(pid: int, limit: float = 20.0) -> None:
    """Waits (at most ``limit`` seconds) until the process tree stops using CPU: the backlog of a
    previous load run must not spill into the next measurement."""
    deadline = time.monotonic() + limit
    quiet = 0
    last = cpu_seconds(pid)
    while time.monotonic() < deadline and quiet < 3:
        time.sleep(0.2)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if now - last <= 0.02 else 0
        last = now


def rss_kb(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


@dataclass
class Service:
    name: str
    argv: list[str]
    port: int
    core: int
    ready_path: str = "/health"
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, logdir: Path, timeout: float = 90.0) -> None:
        self.log = logdir / f"{self.name}.log"
        out = self.log.open("wb")
        self.process = subprocess.Popen(
            self.argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**{k: v for k, v in os.environ.items() if k != "DATABASE_URL"}, **self.env},
            cwd=self.cwd,
            preexec_fn=_pin(self.core),
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(f"GET {self.ready_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f}s: {self.tail()}")

    def tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-1500:]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def nginx_service(upstream_port: int, workdir: Path) -> Service:
    port = free_port()
    conf = workdir / "nginx.conf"
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (workdir / sub).mkdir(exist_ok=True)
    conf.write_text(
        textwrap.dedent(
            f"""\
            worker_processes 1;
            worker_rlimit_nofile 20000;
            user root;
            pid {workdir}/nginx.pid;
            error_log {workdir}/nginx-error.log warn;
            events {{ worker_connections 10000; }}
            http {{
                access_log off;
                client_body_temp_path {workdir}/client_body;
                proxy_temp_path {workdir}/proxy;
                fastcgi_temp_path {workdir}/fastcgi;
                uwsgi_temp_path {workdir}/uwsgi;
                scgi_temp_path {workdir}/scgi;
                client_max_body_size 16m;
                upstream fake {{
                    server 127.0.0.1:{upstream_port};
                    keepalive 512;
                }}
                server {{
                    listen 127.0.0.1:{port} backlog=4096;
                    location / {{
                        proxy_pass http://fake;
                        proxy_http_version 1.1;
                        proxy_set_header Connection "";
                        proxy_buffering off;
                        proxy_read_timeout 120s;
                    }}
                }}
            }}
            """
        )
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return Service("nginx", [nginx, "-c", str(conf), "-g", "daemon off;"], port, PROXY_CORE)


def litellm_service(upstream: str, workdir: Path, models: list[str]) -> Service:
    port = free_port()
    lines = ["model_list:"]
    for model in models:
        lines += [
            f"  - model_name: {json.dumps(model)}",
            "    litellm_params:",
            f"      model: {json.dumps('openai/' + model)}",
            f"      api_base: {upstream}/v1",
            "      api_key: sk-bench",
        ]
    lines += [
        "litellm_settings:",
        "  callbacks: []",
        "  success_callback: []",
        "  failure_callback: []",
        "  drop_params: true",
        "  telemetry: false",
        "general_settings: {}",
    ]
    conf = workdir / "litellm.yaml"
    conf.write_text("\n".join(lines) + "\n")
    argv = [
        str(LITELLM_VENV / "bin" / "litellm"),
        "--config",
        str(conf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "PYTHONUNBUFFERED": "1"}
    return Service("litellm", argv, port, PROXY_CORE, ready_path="/health/liveliness", env=env, cwd=workdir)


def ours_service(upstream: str) -> Service:
    port = free_port()
    argv = [
        str(ROOT / ".venv" / "bin" / "toolmodel"),
        "proxy",
        "--upstream",
        upstream,
        "--dialect",
        "hermes",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
    ]
    return Service("ours", argv, port, PROXY_CORE)


# -- request bodies ---------------------------------------------------------------------------
def tool_definitions(count: int) -> list[dict[str, Any]]:
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather and notes for a location.",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {"type": "string", "description": "City and state, e.g. San Francisco, CA"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    "items": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "integer"},
                                "note": {"type": "string"},
                                "ok": {"type": "boolean"},
                            },
                        },
                    },
                },
                "required": ["location"],
            },
        },
    }
    tools = [weather]
    for index in range(1, count):
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"tool_{index:02d}",
                    "description": f"Tool number {index}: looks something up in system {index} and returns it.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "query": {"type": "string", "description": "what to look up"},
                            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
                            "mode": {"type": "string", "enum": ["fast", "thorough"]},
                        },
                        "required": ["query"],
                    },
                },
            }
        )
    return tools


def chat_body(model: str, *, stream: bool = False, tools: int = 0) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What's the weather like in San Francisco today?"},
        ],
        "max_tokens": 256,
    }
    if tools:
        body["tools"] = tool_definitions(tools)
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


def completion_body(model: str, *, stream: bool = False, prompt_bytes: int = 200) -> bytes:
    prompt = ("<|im_start|>user\nWhat's the weather like in San Francisco today? " * 100)[:prompt_bytes]
    body = {"model": model, "prompt": prompt, "max_tokens": 256, "stream": stream}
    return orjson.dumps(body)


def model_name(**knobs: float) -> str:
    return "bench" + "".join(f"+{key}={value:g}" for key, value in knobs.items())


# -- statistics -------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# -- load: open loop, streams, wrk ------------------------------------------------------------
def new_session(limit: int = 512) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, force_close=False, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=120),
        auto_decompress=False,
    )


async def open_loop(url: str, body: bytes, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    """Fixed-rate requests; latency counted from each request's scheduled start (no coordinated omission)."""
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    errors: list[str] = []
    async with new_session() as session:

        async def one(scheduled: float, record: bool) -> None:
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors.append(f"status {response.status}")
                        return
            except (aiohttp.ClientError, TimeoutError) as error:
                errors.append(type(error).__name__)
                return
            if record:
                latencies.append((time.perf_counter() - scheduled) * 1000)

        tasks = []
        start = time.perf_counter()
        total = int(rate * (warmup + seconds))
        for index in range(total):
            scheduled = start + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(scheduled, index >= rate * warmup)))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    return {
        "rate": rate,
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
    }


@dataclass
class StreamStats:
    requests: int = 0
    errors: int = 0
    events: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "errors": self.errors,
            "token_events": self.events,
            "ttft_p50_ms": percentile(self.ttft_ms, 50),
            "ttft_p99_ms": percentile(self.ttft_ms, 99),
            "gap_p50_ms": percentile(self.gaps_ms, 50),
            "gap_p99_ms": percentile(self.gaps_ms, 99),
        }


async def stream_load(url: str, body: bytes, concurrency: int, seconds: float, max_requests: int) -> StreamStats:
    """Closed loop: ``concurrency`` workers each stream one request after another until time is up."""
    stats = StreamStats()
    headers = {"Content-Type": "application/json"}
    deadline = time.perf_counter() + seconds
    issued = 0
    async with new_session() as session:

        async def worker() -> None:
            nonlocal issued
            while time.perf_counter() < deadline and issued < max_requests:
                issued += 1
                sent = time.perf_counter()
                first: float | None = None
                last = 0.0
                try:
                    async with session.post(url, data=body, headers=headers) as response:
                        if response.status != 200:
                            await response.read()
                            stats.errors += 1
                            continue
                        async for line in response.content:
                            if not line.startswith(b"data:") or not TOKEN_EVENT.search(line):
                                continue
                            now = time.perf_counter()
                            stats.events += 1
                            if first is None:
                                first = now
                                stats.ttft_ms.append((now - sent) * 1000)
                            else:
                                stats.gaps_ms.append((now - last) * 1000)
                            last = now
                except (aiohttp.ClientError, TimeoutError):
                    stats.errors += 1
                    continue
                stats.requests += 1

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), timeout=seconds + 120)
    return stats


WRK_SCRIPT = """\
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "seconds": %.6f, "connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d, "p50_ms": %.3f, "p99_ms": %.3f}\\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def run_wrk(url: str, body: bytes, seconds: float, connections: int, pid: int, workdir: Path) -> dict[str, Any]:
    body_file = workdir / f"wrk-body-{len(body)}.json"
    body_file.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT)
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        env={**os.environ, "BENCH_BODY": str(body_file)},
        timeout=seconds + 60,
        preexec_fn=_pin(LOAD_CORE),
    )
    cpu = cpu_seconds(pid) - cpu_before
    wall = time.monotonic() - wall_before
    match = re.search(r"WRKJSON (\{.*\})", result.stdout)
    if not match:
        raise RuntimeError(f"wrk failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    data: dict[str, Any] = json.loads(match.group(1))
    errors = data["connect"] + data["read"] + data["write"] + data["status"] + data["timeout"]
    rps = data["requests"] / data["seconds"]
    cores = cpu / wall
    return {
        "connections": connections,
        "rps": rps,
        "errors": errors,
        "cpu_cores": cores,
        "rps_per_core": rps / cores if cores > 0.02 else float("nan"),
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
    }


def max_rps(url: str, body: bytes, plan: Plan, pid: int, workdir: Path) -> dict[str, Any]:
    """The best error-free wrk run over the connection counts; all runs kept."""
    runs = [run_wrk(url, body, plan.wrk, c, pid, workdir) for c in plan.wrk_connections]
    clean = [run for run in runs if run["errors"] == 0] or runs
    best = max(clean, key=lambda run: run["rps"])
    return {**best, "runs": runs}


# -- C: parser scaling ------------------------------------------------------------------------
SIZES = (100, 1024, 10240, 102400)
START, END = "<tool_call>", "</tool_call>"


def hermes_deltas(size: int, delta: int = 4) -> tuple[list[str], int]:
    config = fake_upstream.Config(args=size, delta=delta)
    text = fake_upstream.hermes_call(config)
    args_bytes = len(json.dumps(fake_upstream.tool_arguments(size)))
    return fake_upstream._split_deltas(text, config), args_bytes


def ours_parse_seconds(deltas: list[str], min_seconds: float) -> tuple[float, str]:
    """CPU of feeding the deltas to a fresh hermes parser, averaged over runs (events discarded,
    as the proxy does once it has framed them); the first, untimed run checks the arguments."""
    from toolcall_proxy.dialects import get_dialect
    from toolcall_proxy.parsing import fold

    dialect = get_dialect("hermes")
    parser = dialect.parser({"get_weather"})
    events = [event for delta in deltas for event in parser.feed(delta)]
    result = fold([*events, *parser.finish()])
    arguments = result.calls[0].arguments if result.calls else ""
    runs, total = 0, 0.0
    while total < min_seconds or runs < 3:
        parser = dialect.parser({"get_weather"})
        feed = parser.feed
        started = time.process_time()
        for delta in deltas:
            feed(delta)
        parser.finish()
        total += time.process_time() - started
        runs += 1
    return total / runs, arguments


def _bracket_completion(text: str) -> str:
    """The re-parse peer without partial_json_parser: close open strings and brackets, then parse."""
    stack: list[str] = []
    in_string = escape = False
    for char in text:
        if in_string:
            if escape:
                escape = False
            elif char == "\\":
                escape = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append("}" if char == "{" else "]")
        elif char in "}]" and stack:
            stack.pop()
    return text + ('"' if in_string else "") + "".join(reversed(stack))


def reparse_step(previous: str, current: str, loads: Callable[[str], Any]) -> Any:
    """What a re-parse-everything streaming parser does per delta (vLLM's hermes parser's shape):
    count the markers in the text so far and before, split out the open call, parse all of it."""
    previous.count(START)
    previous.count(END)
    starts, ends = current.count(START), current.count(END)
    if starts > ends:
        portion = current.split(START)[-1]
        try:
            value = loads(portion)
        except ValueError:
            return None
        return value.get("arguments") if isinstance(value, dict) else None
    return None


def reparse_loader() -> tuple[Callable[[str], Any], str]:
    try:
        import partial_json_parser
        from partial_json_parser.core.options import Allow
    except ImportError:
        return (lambda text: json.loads(_bracket_completion(text))), "json.loads + bracket completion"

    def loads(text: str) -> Any:
        return partial_json_parser.loads(text, Allow.ALL)

    version = importlib.metadata.version("partial-json-parser")
    return loads, f"partial_json_parser {version} (Allow.ALL)"


def reparse_seconds(deltas: list[str], budget: float, loads: Callable[[str], Any]) -> tuple[float, int]:
    """Total CPU for all deltas; beyond ``budget`` seconds, every stride-th delta is timed and the
    total extrapolated (each step's cost depends only on the text so far, so this is unbiased)."""
    # estimate the whole run from the cost of the last step (the largest) to pick the stride
    # (near the end, but before the closing marker: once the call is closed nothing is parsed)
    late = max(1, int(len(deltas) * 0.9))
    text = "".join(deltas[:late])
    started = time.process_time()
    reparse_step(text[: -len(deltas[late - 1])], text, loads)
    late_step = time.process_time() - started
    estimate = late_step * len(deltas) / 0.9 / 2
    stride = max(1, int(estimate / budget) + 1) if estimate > budget else 1
    previous = ""
    if stride == 1:
        started = time.process_time()
        for delta in deltas:
            current = previous + delta
            reparse_step(previous, current, loads)
            previous = current
        return time.process_time() - started, 1
    timed, cost = 0, 0.0
    for index, delta in enumerate(deltas):
        current = previous + delta
        if index % stride == 0:
            started = time.process_time()
            reparse_step(previous, current, loads)
            cost += time.process_time() - started
            timed += 1
        previous = current
    return cost * len(deltas) / timed, stride


def figure_c_inprocess(plan: Plan) -> dict[str, Any]:
    loads, peer_name = reparse_loader()
    results: dict[str, Any] = {"peer": peer_name, "delta_chars": 4, "sizes": []}
    for size in SIZES:
        deltas, args_bytes = hermes_deltas(size)
        ours, arguments = ours_parse_seconds(deltas, plan.parser_min_seconds)
        expected = json.dumps(fake_upstream.tool_arguments(size))
        peer, stride = reparse_seconds(deltas, plan.reparse_budget, loads)
        row = {
            "size": size,
            "args_bytes": args_bytes,
            "deltas": len(deltas),
            "ours_us": ours * 1e6,
            "ours_ns_per_byte": ours * 1e9 / args_bytes,
            "ours_us_per_delta": ours * 1e6 / len(deltas),
            "ours_correct": arguments == expected,
            "peer_us": peer * 1e6,
            "peer_ns_per_byte": peer * 1e9 / args_bytes,
            "peer_sample_stride": stride,
        }
        results["sizes"].append(row)
        print(
            f"  C {size:>6} B: ours {row['ours_ns_per_byte']:8.0f} ns/B, re-parse {row['peer_ns_per_byte']:10.0f} ns/B"
            f"{'' if stride == 1 else f' (every {stride}th delta timed)'}",
            flush=True,
        )
    return results


# -- F: the decode-time constraint ------------------------------------------------------------
CONSTRAINT_TOOLS = 20
CONSTRAINT_DIALECTS = ("hermes", "qwen3_coder", "llama3_json", "mistral")


def figure_f_inprocess(plan: Plan) -> dict[str, Any]:
    """What the constraint adds to a request for 20 tools and ``tool_choice: required``: its step
    (the grammar found in the cache, its request fields serialized), timed beside the whole
    making of the engine's request without a constraint (prompt render and payload), both in
    turns; the grammar's first build; and, on the engine's side, llguidance compiling it."""
    from llguidance import LLMatcher

    from toolcall_proxy.dialects import get_dialect
    from toolcall_proxy.server.constraints import STRUCTURED_OUTPUTS, GrammarBook
    from toolcall_proxy.server.metrics import ProxyMetrics
    from toolcall_proxy.server.settings import ProxySettings
    from toolcall_proxy.server.toolpath import ToolPath
    from toolcall_proxy.server.validation import parse_tool_request
    from toolcall_proxy.sim.constrained import Vocabulary, is_single_token

    body = orjson.loads(chat_body("m", tools=CONSTRAINT_TOOLS))
    request = parse_tool_request({**body, "tool_choice": "required"})
    results: dict[str, Any] = {"tools": CONSTRAINT_TOOLS, "dialects": {}}

    def per_request_us(work: Callable[[], Any]) -> float:
        rounds, start = 0, time.perf_counter()
        while rounds < 200 or time.perf_counter() - start < plan.parser_min_seconds / 4:
            work()
            rounds += 1
        return (time.perf_counter() - start) / rounds * 1e6

    for name in CONSTRAINT_DIALECTS:
        dialect = get_dialect(name)
        plain = ToolPath(dialect, ProxySettings(dialect=name), ProxyMetrics())
        constrained = ToolPath(dialect, ProxySettings(dialect=name), ProxyMetrics())
        constrained.engine_fields = STRUCTURED_OUTPUTS
        words = Vocabulary([t for t in (*dialect.special_tokens, *dialect.stop) if is_single_token(t)])
        constrained.grammars = GrammarBook(dialect, {token: words.ids(token)[0] for token in words.specials[1:]})
        start = time.perf_counter()
        grammar = constrained.grammars.grammar(request)
        first_build = time.perf_counter() - start
        assert grammar is not None
        for _ in range(3):  # kept the second time its tools come, then found
            constrained.upstream_call(request)

        def constraint_step(path: ToolPath = constrained) -> None:
            found = path._constraint(request)
            assert found is not None
            orjson.dumps(found.fields)

        def whole_request(path: ToolPath = plain) -> None:
            orjson.dumps(path.upstream_call(request).payload)

        step_us, whole_us = [], []
        for _ in range(3):  # in turns, so that drift on the machine falls on both alike
            step_us.append(per_request_us(constraint_step))
            whole_us.append(per_request_us(whole_request))
        start = time.perf_counter()
        matcher = LLMatcher(words.tokenizer, LLMatcher.grammar_from_lark(grammar), log_level=0)
        compile_seconds = time.perf_counter() - start
        assert not matcher.is_error(), matcher.get_error()
        row = {
            "constraint_us": sorted(step_us)[1],
            "request_us": sorted(whole_us)[1],
            "first_build_ms": first_build * 1e3,
            "grammar_bytes": len(grammar),
            "llguidance_compile_ms": compile_seconds * 1e3,
        }
        results["dialects"][name] = row
        print(
            f"  F {name:12} constraint {row['constraint_us']:6.1f} us per request (cached), the request without "
            f"it {row['request_us']:7.1f} us; first build {row['first_build_ms']:.1f} ms; {row['grammar_bytes']} B "
            f"grammar; llguidance compiles it in {row['llguidance_compile_ms']:.1f} ms",
            flush=True,
        )
    return results


# -- D: memory --------------------------------------------------------------------------------
async def upstream_stats(upstream: str) -> dict[str, int]:
    async with aiohttp.ClientSession() as session, session.get(upstream + "/stats") as response:
        return dict(await response.json())


async def hold_streams(
    url: str, body: bytes, count: int, pid: int, upstream: str, on_held: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Opens ``count`` streams held by a slow upstream, measures RSS once all are open, closes them."""
    headers = {"Content-Type": "application/json"}
    opened = 0
    failed: list[str] = []
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=90))
    release = asyncio.Event()

    async def one() -> None:
        nonlocal opened
        try:
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    failed.append(f"status {response.status}")
                    return
                opened += 1
                await release.wait()
        except (aiohttp.ClientError, TimeoutError) as error:
            failed.append(type(error).__name__)

    before = rss_kb(pid)
    tasks = []
    for _ in range(count):
        tasks.append(asyncio.ensure_future(one()))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0.02)  # do not overrun the listen backlogs
    deadline = time.monotonic() + 60
    at_upstream = 0
    while time.monotonic() < deadline:
        at_upstream = (await upstream_stats(upstream))["open_streams"]
        if (opened >= count and at_upstream >= count) or (len(failed) + opened >= count and opened < count):
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)
    held = rss_kb(pid)
    if on_held is not None:
        await asyncio.get_running_loop().run_in_executor(None, on_held)
    release.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await session.close()
    # wait for the upstream to see the streams closed, so the next target starts clean
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (await upstream_stats(upstream))["open_streams"] == 0:
            break
        await asyncio.sleep(0.25)
    return {
        "streams": count,
        "opened": opened,
        "at_upstream": at_upstream,
        "failed": len(failed),
        "failure_kinds": sorted(set(failed))[:5],
        "rss_before_kb": before,
        "rss_held_kb": held,
        "kb_per_stream": (held - before) / max(opened, 1),
    }


# -- the run ----------------------------------------------------------------------------------
class Bench:
    def __init__(self, plan: Plan, skip: set[str], only: set[str], workdir: Path) -> None:
        self.plan = plan
        self.skip = skip
        self.only = only
        self.workdir = workdir
        self.results: dict[str, Any] = {"not_measured": {}}
        self.services: dict[str, Service] = {}
        self.upstream: Service | None = None

    # -- set-up ---------------------------------------------------------------------------
    def check_tools(self) -> None:
        missing = self.results["not_measured"]
        if "nginx" not in self.skip and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
            missing["nginx"] = f"nginx is not installed: {INSTALL['nginx']}"
        if "litellm" not in self.skip and not (LITELLM_VENV / "bin" / "litellm").exists():
            missing["litellm"] = f"LiteLLM is not installed: {INSTALL['litellm']}"
        if not shutil.which("wrk"):
            missing["wrk"] = f"wrk is not installed (max requests/s not measured): {INSTALL['wrk']}"
        for name in self.skip:
            missing.setdefault(name, "skipped (--skip)")
        for name, why in missing.items():
            print(f"not measured: {name}: {why}", flush=True)

    def start(self) -> None:
        upstream_port = free_port()
        fake = Service(
            "upstream",
            [sys.executable, str(HERE / "fake_upstream.py"), "--port", str(upstream_port)],
            upstream_port,
            LOAD_CORE,
        )
        fake.start(self.workdir)
        self.upstream = fake
        missing = self.results["not_measured"]
        self.services["ours"] = ours_service(fake.url)
        if "nginx" not in missing:
            self.services["nginx"] = nginx_service(upstream_port, self.workdir)
        if "litellm" not in missing:
            self.services["litellm"] = litellm_service(fake.url, self.workdir, self.litellm_models())
        for name, service in list(self.services.items()):
            try:
                service.start(self.workdir, timeout=120 if name == "litellm" else 30)
                print(f"started {name} on :{service.port} (pid {service.pid}, core {service.core})", flush=True)
            except RuntimeError as error:
                if name == "ours":
                    raise
                missing[name] = f"did not start: {error}"
                print(f"not measured: {name}: {missing[name]}", flush=True)
                del self.services[name]

    def stop(self) -> None:
        for service in [*self.services.values(), self.upstream]:
            if service is not None:
                service.stop()

    def litellm_models(self) -> list[str]:
        models = self.stream_models()["pass"]
        return ["bench", models[0], models[2], model_name(ttft=30000, n=1)]

    def peers(self) -> list[str]:
        return [name for name in ("nginx", "litellm") if name in self.services]

    def url(self, target: str) -> str:
        if target == "direct":
            assert self.upstream is not None
            return self.upstream.url
        return self.services[target].url

    def pid(self, target: str) -> int:
        if target == "direct":
            assert self.upstream is not None
            return self.upstream.pid
        return self.services[target].pid

    # -- A --------------------------------------------------------------------------------
    def figure_a(self) -> None:
        plan = self.plan
        chat = chat_body("bench")
        tools = chat_body("bench", tools=plan.tools)
        completion = completion_body("bench", prompt_bytes=len(tools))
        cases = [("direct", "pass", "/v1/chat/completions", chat)]
        cases += [(peer, "pass", "/v1/chat/completions", chat) for peer in self.peers()]
        cases += [("ours", "pass", "/v1/chat/completions", chat)]
        cases += [("direct", "tool", "/v1/completions", completion), ("ours", "tool", "/v1/chat/completions", tools)]
        if "litellm" in self.services:
            cases.append(("litellm", "tool", "/v1/chat/completions", tools))
        results: dict[str, Any] = {}
        for target, kind, path, body in cases:
            url = self.url(target) + path
            key = f"{target}/{kind}"
            entry: dict[str, Any] = {"path": path, "body_bytes": len(body)}
            if "wrk" not in self.results["not_measured"]:
                wait_idle(self.pid(target))
                entry["max"] = max_rps(url, body, plan, self.pid(target), self.workdir)
                print(
                    f"  A {key:<14} max {entry['max']['rps']:8.0f} req/s, {entry['max']['rps_per_core']:8.0f} /core "
                    f"(cpu {entry['max']['cpu_cores']:.2f}, errors {entry['max']['errors']})",
                    flush=True,
                )
            rate = plan.rate
            if "max" in entry and entry["max"]["rps"] < 1.5 * rate:
                rate = max(5.0, round(entry["max"]["rps"] / 2))  # overloaded at the planned rate
            wait_idle(self.pid(target))
            entry["open_loop"] = run(open_loop(url, body, rate, plan.open_loop, plan.warmup))
            print(
                f"  A {key:<14} @{rate:.0f}/s p50 {entry['open_loop']['p50_ms']:.3f} ms "
                f"p99 {entry['open_loop']['p99_ms']:.3f} ms errors {entry['open_loop']['errors']}",
                flush=True,
            )
            results[key] = entry
        self.results["A"] = results

    # -- B --------------------------------------------------------------------------------
    def stream_models(self) -> dict[str, tuple[str, int, str, int]]:
        """Per kind: (long model, chunks, short model, chunks). A short stream lasts as long as a
        long one (its time to first token takes up the missing chunks), so both runs see the same
        request rate and their CPU difference is the cost of the extra chunks alone."""
        plan = self.plan
        ttft, itl, n = plan.ttft_ms, plan.itl_ms, plan.stream_chunks
        tool_args = n * 4  # about as many deltas as the pass-through stream has chunks
        long_deltas, short_deltas = len(hermes_deltas(tool_args)[0]), len(hermes_deltas(0)[0])
        return {
            "pass": (
                model_name(ttft=ttft, itl=itl, n=n),
                n,
                model_name(ttft=ttft + (n - 1) * itl, itl=itl, n=1),
                1,
            ),
            "tool": (
                model_name(ttft=ttft, itl=itl, delta=4, args=tool_args),
                long_deltas,
                model_name(ttft=ttft + (long_deltas - short_deltas) * itl, itl=itl, delta=4, args=0),
                short_deltas,
            ),
        }

    def figure_b(self) -> None:
        plan = self.plan
        results: dict[str, Any] = {}
        models = self.stream_models()
        cases = [("direct", "pass"), *((peer, "pass") for peer in self.peers()), ("ours", "pass")]
        cases += [("direct", "tool"), *(("nginx", "tool") for _ in [0] if "nginx" in self.services), ("ours", "tool")]
        for target, kind in cases:
            key = f"{target}/{kind}"
            pid = self.pid(target)
            long_model, long_chunks, short_model, short_chunks = models[kind]
            if kind == "pass":
                path = "/v1/chat/completions"
            else:  # ours gets a chat request with a tool; the others relay the raw completion stream
                path = "/v1/chat/completions" if target == "ours" else "/v1/completions"

            def body_for(model: str, target: str = target, kind: str = kind) -> bytes:
                if kind == "pass":
                    return chat_body(model, stream=True)
                if target == "ours":
                    return chat_body(model, stream=True, tools=1)
                return completion_body(model, stream=True)

            url = self.url(target) + path
            wait_idle(pid)
            before = cpu_seconds(pid)
            stats = run(stream_load(url, body_for(long_model), plan.stream_concurrency, plan.stream_seconds, 100_000))
            cpu_long = cpu_seconds(pid) - before
            wait_idle(pid)
            before = cpu_seconds(pid)
            short_seconds = max(2.0, plan.stream_seconds / 2)
            short = run(stream_load(url, body_for(short_model), plan.stream_concurrency, short_seconds, 100_000))
            cpu_short = cpu_seconds(pid) - before
            entry = stats.summary()
            per_request_long = cpu_long / max(stats.requests, 1)
            per_request_short = cpu_short / max(short.requests, 1)
            entry.update(
                model=long_model,
                short_model=short_model,
                chunks_per_request=long_chunks,
                cpu_s=cpu_long,
                cpu_us_per_chunk_all_in=cpu_long * 1e6 / max(stats.requests * long_chunks, 1),
                cpu_us_per_request_short=per_request_short * 1e6,
                short_requests=short.requests,
                short_errors=short.errors,
                cpu_us_per_chunk_marginal=(per_request_long - per_request_short) * 1e6 / (long_chunks - short_chunks),
            )
            results[key] = entry
            print(
                f"  B {key:<14} ttft p50 {entry['ttft_p50_ms']:.2f} ms, gap p99 {entry['gap_p99_ms']:.2f} ms, "
                f"cpu/chunk {entry['cpu_us_per_chunk_all_in']:.1f} us all-in, "
                f"{entry['cpu_us_per_chunk_marginal']:.1f} us marginal "
                f"({stats.requests} streams, {stats.errors} errors)",
                flush=True,
            )
        self.results["B"] = results

    # -- C --------------------------------------------------------------------------------
    def figure_c(self) -> None:
        plan = self.plan
        inprocess = figure_c_inprocess(plan)
        e2e: list[dict[str, Any]] = []
        service = self.services["ours"]
        for size in SIZES:
            deltas, args_bytes = hermes_deltas(size)
            body = chat_body(model_name(delta=4, args=size), stream=True, tools=1)
            requests, errors, cpu = 0, 0, 0.0
            for _ in range(3):  # bounded: at most three rounds of e2e_min_seconds each
                before = cpu_seconds(service.pid)
                url = service.url + "/v1/chat/completions"
                stats = run(stream_load(url, body, 1, plan.e2e_min_seconds, 5000))
                cpu += cpu_seconds(service.pid) - before
                requests += stats.requests
                errors += stats.errors
                if requests >= 3 or stats.requests == 0:
                    break
            per_request = cpu / max(requests, 1)
            e2e.append(
                {
                    "size": size,
                    "args_bytes": args_bytes,
                    "deltas": len(deltas),
                    "requests": requests,
                    "errors": errors,
                    "cpu_us_per_request": per_request * 1e6,
                    "ns_per_byte": per_request * 1e9 / args_bytes,
                    "us_per_delta": per_request * 1e6 / len(deltas),
                }
            )
            print(
                f"  C e2e {size:>6} B: {per_request * 1e3:8.2f} ms/request, {e2e[-1]['ns_per_byte']:7.0f} ns/B "
                f"({requests} requests, {errors} errors)",
                flush=True,
            )
        self.results["C"] = {"in_process": inprocess, "end_to_end": e2e}

    # -- D --------------------------------------------------------------------------------
    def figure_f(self) -> None:
        self.results["F"] = figure_f_inprocess(self.plan)

    def figure_d(self) -> None:
        plan = self.plan
        assert self.upstream is not None
        results: dict[str, Any] = {}
        model = model_name(ttft=30000, n=1)
        # Ours starts afresh: after figures A-C its heap has free room that would hide what streams
        # cost (nginx's pools are sized by configuration; LiteLLM's start-up takes minutes).
        ours = self.services["ours"]
        ours.stop()
        ours.start(self.workdir, timeout=30)
        for target in ["ours", *self.peers()]:
            service = self.services[target]
            idle = rss_kb(service.pid)
            held = run(
                hold_streams(
                    service.url + "/v1/chat/completions",
                    chat_body(model, stream=True),
                    plan.streams_held,
                    service.pid,
                    self.upstream.url,
                )
            )
            results[target] = {"idle_rss_kb_now": idle, **held}
            print(
                f"  D {target:<8} rss {idle / 1024:.1f} MB now, {held['rss_held_kb'] / 1024:.1f} MB with "
                f"{held['opened']} streams open: {held['kb_per_stream']:.1f} KB/stream ({held['failed']} failed)",
                flush=True,
            )
        results["startup_idle_rss_kb"] = self.results.get("idle_rss_kb", {})
        self.results["D"] = results

    # -- E --------------------------------------------------------------------------------
    def figure_e(self) -> None:
        """The operator at scale: operator_scale.py in its own process (the emulator in a thread,
        the operator as its child), once the proxy figures' services have stopped."""
        output = self.workdir / "operator.json"
        command = [sys.executable, str(HERE / "operator_scale.py"), "--count", str(self.plan.toolmodels)]
        completed = subprocess.run(
            [*command, "--json", str(output)],
            capture_output=True,
            text=True,
            timeout=900,
            preexec_fn=lambda: os.sched_setaffinity(0, range(os.cpu_count() or 1)),  # both cores, as deployed
        )
        if completed.returncode != 0 or not output.exists():
            self.results["not_measured"]["E"] = f"operator_scale.py failed: {completed.stderr.strip()[-500:]}"
            print(f"  E failed: {self.results['not_measured']['E']}", flush=True)
            return
        self.results["E"] = json.loads(output.read_text())
        print("\n".join(f"  {line}" for line in completed.stdout.splitlines()), flush=True)


def run(coroutine: Any) -> Any:
    if uvloop is not None:
        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


# -- report -----------------------------------------------------------------------------------
@dataclass
class Row:
    figure: str
    ours: str
    peer: str = "—"
    ratio: str = "—"
    target: str = "—"
    verdict: str = "—"


def _ms(value: float) -> str:
    return f"{value:.3f} ms"


def _kb(size: int) -> str:
    return f"{size / 1000:g} KB" if size < 1024 else f"{size // 1024} KB"


def _check(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def build_rows(results: dict[str, Any]) -> list[Row]:  # noqa: C901 - one table, row by row
    rows: list[Row] = []
    missing = results.get("not_measured", {})
    a = results.get("A")
    if a:
        direct = a["direct/pass"]["open_loop"]
        ours = a["ours/pass"]["open_loop"]
        added = {k.split("/")[0]: v["open_loop"] for k, v in a.items() if k.endswith("/pass")}
        ours_p50, ours_p99 = ours["p50_ms"] - direct["p50_ms"], ours["p99_ms"] - direct["p99_ms"]
        for peer in ("nginx", "litellm"):
            if peer not in added:
                rows.append(Row(f"A pass-through added p50 vs {peer}", "not measured", missing.get(peer, "?")))
                continue
            rate = added[peer]["rate"]
            peer_p50 = added[peer]["p50_ms"] - direct["p50_ms"]
            peer_p99 = added[peer]["p99_ms"] - direct["p99_ms"]
            target = "≤ nginx + 0.5 ms" if peer == "nginx" else "—"
            verdict = _check(ours_p50 - peer_p50 <= 0.5) if peer == "nginx" else "—"
            note = "" if rate == ours["rate"] else f" (@{rate:.0f}/s: overloaded at {ours['rate']:.0f}/s)"
            rows.append(
                Row(
                    f"A pass-through added p50 @{ours['rate']:.0f} req/s vs {peer}",
                    _ms(ours_p50),
                    _ms(peer_p50) + note,
                    f"{ours_p50 - peer_p50:+.3f} ms",
                    target,
                    verdict,
                )
            )
            rows.append(
                Row(
                    f"A pass-through added p99 vs {peer}",
                    _ms(ours_p99),
                    _ms(peer_p99) + note,
                    f"{ours_p99 - peer_p99:+.3f} ms",
                )
            )
        if "max" in a["ours/pass"]:
            ours_rps = a["ours/pass"]["max"]["rps_per_core"]
            rows.append(
                Row(
                    "A direct upstream max req/s (fake upstream, shares core 1 with wrk)",
                    f"{a['direct/pass']['max']['rps']:.0f} req/s ({a['direct/pass']['max']['rps_per_core']:.0f}/core)",
                    target="≫ every proxy",
                    verdict=_check(a["direct/pass"]["max"]["rps"] > 2 * a["ours/pass"]["max"]["rps"]),
                )
            )
            rows.append(
                Row(
                    "A pass-through max req/s (wrk, no errors)",
                    f"{a['ours/pass']['max']['rps']:.0f} req/s at {a['ours/pass']['max']['cpu_cores']:.2f} core",
                )
            )
            for peer, factor, target in (("litellm", 5.0, "≥ 5x LiteLLM"), ("nginx", 1 / 3, "≥ 1/3 nginx")):
                if f"{peer}/pass" not in a:
                    rows.append(
                        Row(
                            f"A pass-through req/s per core vs {peer}", f"{ours_rps:.0f}", "not measured", target=target
                        )
                    )
                    continue
                peer_rps = a[f"{peer}/pass"]["max"]["rps_per_core"]
                rows.append(
                    Row(
                        f"A pass-through req/s per core vs {peer}",
                        f"{ours_rps:.0f}",
                        f"{peer_rps:.0f} ({a[f'{peer}/pass']['max']['rps']:.0f} req/s at "
                        f"{a[f'{peer}/pass']['max']['cpu_cores']:.2f} core)",
                        f"{ours_rps / peer_rps:.2f}x",
                        target,
                        _check(ours_rps >= factor * peer_rps),
                    )
                )
            tool_rps = a["ours/tool"]["max"]["rps_per_core"]
            rows.append(
                Row(
                    f"A tool path ({results.get('tools', 20)} tools, 1 call) max req/s (wrk, no errors)",
                    f"{a['ours/tool']['max']['rps']:.0f} req/s at {a['ours/tool']['max']['cpu_cores']:.2f} core",
                )
            )
            if "nginx/pass" in a:
                nginx_rps = a["nginx/pass"]["max"]["rps_per_core"]
                rows.append(
                    Row(
                        "A tool path (20 tools, 1 call) req/s per core vs nginx pass-through",
                        f"{tool_rps:.0f} ({a['ours/tool']['max']['rps']:.0f} req/s)",
                        f"{nginx_rps:.0f}",
                        f"{tool_rps / nginx_rps:.2f}x",
                        "≥ 1/5 nginx",
                        _check(tool_rps >= nginx_rps / 5),
                    )
                )
            if "litellm/tool" in a:
                peer_rps = a["litellm/tool"]["max"]["rps_per_core"]
                rows.append(
                    Row(
                        "A tool path req/s per core vs LiteLLM forwarding tools",
                        f"{tool_rps:.0f}",
                        f"{peer_rps:.0f}",
                        f"{tool_rps / peer_rps:.2f}x",
                    )
                )
        tool = a["ours/tool"]["open_loop"]
        direct_tool = a["direct/tool"]["open_loop"]
        rows.append(
            Row(
                f"A tool path added p50 / p99 @{tool['rate']:.0f} req/s (vs direct /v1/completions)",
                f"{tool['p50_ms'] - direct_tool['p50_ms']:.3f} / {tool['p99_ms'] - direct_tool['p99_ms']:.3f} ms",
            )
        )
    b = results.get("B")
    if b:
        for kind, label, limit in (("pass", "pass-through", 20.0), ("tool", "streamed tool call", 50.0)):
            direct = b[f"direct/{kind}"]
            ours = b[f"ours/{kind}"]
            peers = [p for p in ("nginx", "litellm") if f"{p}/{kind}" in b]
            ttft = ours["ttft_p50_ms"] - direct["ttft_p50_ms"]
            gap = ours["gap_p99_ms"] - direct["gap_p99_ms"]
            for peer in peers or [None]:
                entry = b.get(f"{peer}/{kind}") if peer else None
                peer_label = peer if kind == "pass" else f"{peer} relaying the raw stream"
                rows.append(
                    Row(
                        f"B {label} added TTFT p50" + (f" vs {peer_label}" if peer else ""),
                        _ms(ttft),
                        _ms(entry["ttft_p50_ms"] - direct["ttft_p50_ms"]) if entry else "—",
                        f"{ttft - (entry['ttft_p50_ms'] - direct['ttft_p50_ms']):+.3f} ms" if entry else "—",
                    )
                )
                rows.append(
                    Row(
                        f"B {label} added inter-chunk p99" + (f" vs {peer_label}" if peer else ""),
                        _ms(gap),
                        _ms(entry["gap_p99_ms"] - direct["gap_p99_ms"]) if entry else "—",
                        f"{gap - (entry['gap_p99_ms'] - direct['gap_p99_ms']):+.3f} ms" if entry else "—",
                    )
                )
            for peer in peers or [None]:
                entry = b.get(f"{peer}/{kind}") if peer else None
                mine = ours["cpu_us_per_chunk_marginal"]
                rows.append(
                    Row(
                        f"B {label} proxy CPU per relayed chunk (marginal)" + (f" vs {peer}" if peer else ""),
                        f"{mine:.1f} µs",
                        f"{entry['cpu_us_per_chunk_marginal']:.1f} µs" if entry else "—",
                        f"{mine / entry['cpu_us_per_chunk_marginal']:.2f}x" if entry else "—",
                        f"≤ {limit:.0f} µs",
                        _check(mine <= limit),
                    )
                )
            rows.append(
                Row(
                    f"B {label}: the fake upstream's own CPU per chunk sent (calibration: syscall cost here)",
                    f"{direct['cpu_us_per_chunk_marginal']:.1f} µs",
                )
            )
            rows.append(
                Row(
                    f"B {label} proxy CPU per chunk, all-in "
                    f"(incl. per-request cost / {ours['chunks_per_request']} chunks)",
                    f"{ours['cpu_us_per_chunk_all_in']:.1f} µs",
                    " / ".join(f"{p} {b[f'{p}/{kind}']['cpu_us_per_chunk_all_in']:.1f} µs" for p in peers) or "—",
                )
            )
    c = results.get("C")
    if c:
        sizes = {row["size"]: row for row in c["in_process"]["sizes"]}
        for size, row in sizes.items():
            rows.append(
                Row(
                    f"C parser CPU per argument byte, {_kb(size)}, 4-char deltas (in-process)",
                    f"{row['ours_ns_per_byte']:.0f} ns/B",
                    f"{row['peer_ns_per_byte']:.0f} ns/B",
                    f"{row['peer_ns_per_byte'] / row['ours_ns_per_byte']:.0f}x cheaper",
                )
            )
        big, small = sizes[102400], sizes[1024]
        growth = big["ours_ns_per_byte"] / small["ours_ns_per_byte"]
        rows.append(
            Row(
                "C parser cost/byte 100 KB ÷ 1 KB (in-process)",
                f"{growth:.2f}",
                f"{big['peer_ns_per_byte'] / small['peer_ns_per_byte']:.1f} (re-parse)",
                target="≤ 1.3",
                verdict=_check(growth <= 1.3),
            )
        )
        advantage = big["peer_ns_per_byte"] / big["ours_ns_per_byte"]
        rows.append(
            Row(
                f"C re-parse ({c['in_process']['peer']}) ÷ ours at 100 KB",
                f"{big['ours_us'] / 1e3:.1f} ms/request",
                f"{big['peer_us'] / 1e6:.2f} s/request",
                f"{advantage:.0f}x",
                "≥ 20x",
                _check(advantage >= 20),
            )
        )
        e2e = {row["size"]: row for row in c["end_to_end"]}
        for size, row in e2e.items():
            rows.append(
                Row(
                    f"C end to end through the proxy, {_kb(size)} of arguments",
                    f"{row['cpu_us_per_request'] / 1e3:.2f} ms/request, {row['ns_per_byte']:.0f} ns/B",
                )
            )
        if 102400 in e2e and 1024 in e2e:
            rows.append(
                Row(
                    "C end to end cost/byte 100 KB ÷ 1 KB",
                    f"{e2e[102400]['ns_per_byte'] / e2e[1024]['ns_per_byte']:.2f}",
                    target="≤ 1.3",
                    verdict=_check(e2e[102400]["ns_per_byte"] / e2e[1024]["ns_per_byte"] <= 1.3),
                )
            )
    d = results.get("D")
    if d:
        idle = results.get("idle_rss_kb", {})
        ours = d["ours"]
        peers = [p for p in ("nginx", "litellm") if p in d]
        rows.append(
            Row(
                "D proxy idle RSS (after start-up)",
                f"{idle.get('ours', 0) / 1024:.1f} MB",
                " / ".join(f"{p} {idle.get(p, 0) / 1024:.1f} MB" for p in peers) or "—",
                " / ".join(f"{idle.get('ours', 0) / max(idle.get(p, 1), 1):.2f}x" for p in peers) or "—",
                "≤ 60 MB",
                _check(idle.get("ours", 0) <= 60 * 1024),
            )
        )
        rows.append(
            Row(
                f"D RSS per open stream ({ours['opened']} streams held, 30 s TTFT)",
                f"{ours['kb_per_stream']:.1f} KB",
                " / ".join(f"{p} {d[p]['kb_per_stream']:.1f} KB ({d[p]['opened']} open)" for p in peers) or "—",
                " / ".join(
                    f"{ours['kb_per_stream'] / d[p]['kb_per_stream']:.2f}x" for p in peers if d[p]["kb_per_stream"] > 0
                )
                or "—",
                "≤ 10 KB",
                _check(ours["kb_per_stream"] <= 10 and ours["opened"] == ours["streams"]),
            )
        )
        rows.append(
            Row(
                f"D RSS with {ours['streams']} open streams",
                f"{ours['rss_held_kb'] / 1024:.1f} MB",
                " / ".join(f"{p} {d[p]['rss_held_kb'] / 1024:.1f} MB" for p in peers) or "—",
            )
        )
    e = results.get("E")
    if e:
        rows.append(
            Row(
                f"E {e['reconciled']} ToolModels created -> all children exist (emulated API server)",
                f"{e['seconds']:.1f} s",
                f"CPU: operator {e['operator_cpu_seconds']:.1f} s, emulator {e['emulator_cpu_seconds']:.1f} s",
                target="< 60 s",
                verdict=_check(e["seconds"] < 60),
            )
        )
        rows.append(
            Row(
                "E operator peak RSS",
                f"{e['operator_peak_rss_mb']:.1f} MB",
                target="< 200 MB",
                verdict=_check(e["operator_peak_rss_mb"] < 200),
            )
        )
    f = results.get("F")
    if f:
        for name, row in f["dialects"].items():
            rows.append(
                Row(
                    f"F constraint per request, {f['tools']} tools, {name}, grammar cached (in-process) "
                    "vs making the engine's request without it",
                    f"{row['constraint_us']:.1f} µs",
                    f"{row['request_us']:.1f} µs",
                    f"{row['constraint_us'] / row['request_us']:.2f}x",
                    "< 1 ms",
                    _check(row["constraint_us"] < 1000),
                )
            )
            rows.append(
                Row(
                    f"F first grammar build, {name}; llguidance compiling it (engine side)",
                    f"{row['first_build_ms']:.1f} ms",
                    f"{row['llguidance_compile_ms']:.1f} ms",
                )
            )
    for name, why in missing.items():
        rows.append(Row(f"not measured: {name}", why))
    return rows


def markdown(rows: list[Row]) -> str:
    lines = ["| figure | ours | peer | ours/peer | target | result |", "|---|---|---|---|---|---|"]
    for row in rows:
        cells = [row.figure, row.ours, row.peer, row.ratio, row.target, row.verdict]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for package in ("toolmodel", "aiohttp", "uvicorn", "uvloop", "httptools", "orjson", "partial-json-parser"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    litellm_python = LITELLM_VENV / "bin" / "python"
    if litellm_python.exists():
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            versions["litellm"] = subprocess.run(
                [str(litellm_python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
    for tool, argv in (("nginx", ["nginx", "-v"]), ("wrk", ["wrk", "-v"])):
        path = shutil.which(argv[0]) or (f"/usr/sbin/{argv[0]}" if Path(f"/usr/sbin/{argv[0]}").exists() else None)
        if path:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                out = subprocess.run([path, *argv[1:]], capture_output=True, text=True, timeout=10)
                text = (out.stdout + out.stderr).strip().splitlines()
                versions[tool] = text[0].split(" Copyright")[0].removeprefix("nginx version: ") if text else "?"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "versions": versions,
    }


def summarize_pyspy(raw: Path, top: int = 30) -> str:
    """py-spy's raw (collapsed) stacks as inclusive and self shares per function."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            name, _, where = frame.partition(" (")
            path = where.rstrip(")").rsplit(":", 1)[0]
            short = "/".join(path.split("/")[-2:]) if path else ""
            frames.append(f"{name} [{short}]")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    if not total:
        return "(no samples)"
    lines = [f"{total} samples; inclusive share (frames under 99%):"]
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])
    lines += [f"  {count / total * 100:5.1f}%  {frame}" for frame, count in ranked if count / total < 0.99][:top]
    lines.append("self share (where the CPU is spent):")
    lines += [
        f"  {count / total * 100:5.1f}%  {frame}" for frame, count in sorted(own.items(), key=lambda i: -i[1])[:15]
    ]
    return "\n".join(lines)


def pyspy_binary() -> str | None:
    candidate = DEPS / "bin" / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def profile_cpu(bench: Bench, seconds: float) -> dict[str, str]:
    """py-spy samples of our proxy under each load that misses or nears a target."""
    pyspy = pyspy_binary()
    if pyspy is None:
        return {"cpu": "py-spy is not installed: bash hack/bench/setup.sh"}
    ours = bench.services["ours"]
    plan = bench.plan
    stream_model = bench.stream_models()["pass"][0]
    tool_stream_model = bench.stream_models()["tool"][0]
    loads: list[tuple[str, Callable[[], Any]]] = [
        (
            "pass-through, non-streaming (wrk)",
            lambda: run_wrk(
                ours.url + "/v1/chat/completions", chat_body("bench"), seconds, 32, ours.pid, bench.workdir
            ),
        ),
        (
            f"tool path, non-streaming, {plan.tools} tools (wrk)",
            lambda: run_wrk(
                ours.url + "/v1/chat/completions",
                chat_body("bench", tools=plan.tools),
                seconds,
                16,
                ours.pid,
                bench.workdir,
            ),
        ),
        (
            "pass-through stream",
            lambda: run(
                stream_load(
                    ours.url + "/v1/chat/completions",
                    chat_body(stream_model, stream=True),
                    plan.stream_concurrency,
                    seconds,
                    100_000,
                )
            ),
        ),
        (
            "streamed tool call, 1 tool",
            lambda: run(
                stream_load(
                    ours.url + "/v1/chat/completions",
                    chat_body(tool_stream_model, stream=True, tools=1),
                    plan.stream_concurrency,
                    seconds,
                    100_000,
                )
            ),
        ),
    ]
    profiles: dict[str, str] = {}
    for index, (name, load) in enumerate(loads):
        raw = bench.workdir / f"pyspy-{index}.txt"
        wait_idle(ours.pid)
        recorder = subprocess.Popen(
            [pyspy, "record", "-p", str(ours.pid), "-d", f"{seconds + 1:g}", "-r", "200", "-f", "raw", "-o", str(raw)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_pin(LOAD_CORE),
        )
        time.sleep(0.5)
        load()
        try:
            recorder.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()
        profiles[name] = summarize_pyspy(raw) if raw.exists() else "(py-spy wrote nothing)"
        print(f"-- profile: {name}\n{profiles[name]}", flush=True)
    return profiles


def profile_memory(bench: Bench) -> str:
    """tracemalloc growth of our proxy (run by memprofile_proxy.py) with the streams of figure D open."""
    assert bench.upstream is not None
    report = bench.workdir / "memprofile.txt"
    port = free_port()
    argv = [
        sys.executable,
        str(HERE / "memprofile_proxy.py"),
        str(report),
        "--upstream",
        bench.upstream.url,
        "--dialect",
        "hermes",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
    ]
    service = Service("ours-tracemalloc", argv, port, PROXY_CORE)
    service.start(bench.workdir)
    try:
        body = chat_body(model_name(ttft=30000, n=1), stream=True)
        run(stream_load(service.url + "/v1/chat/completions", chat_body("bench", stream=True), 4, 1.0, 50))
        os.kill(service.pid, signal.SIGUSR1)
        _wait_for_text(report, "baseline")

        def snapshot() -> None:
            report.write_text("")
            os.kill(service.pid, signal.SIGUSR1)
            _wait_for_text(report, "growth")

        run(
            hold_streams(
                service.url + "/v1/chat/completions",
                body,
                bench.plan.streams_held,
                service.pid,
                bench.upstream.url,
                on_held=snapshot,
            )
        )
        text = report.read_text()
    finally:
        service.stop()
    print(f"-- memory profile ({bench.plan.streams_held} open streams)\n{text}", flush=True)
    return text


def _wait_for_text(path: Path, text: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short durations: a smoke run")
    parser.add_argument("--skip", default="", help="comma-separated peers not to measure: litellm,nginx")
    parser.add_argument("--only", default="A,B,C,D,E,F", help="figures to measure, e.g. A,C (default all)")
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "latest.json"), help="where to write JSON")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile our proxy: py-spy under load, tracemalloc with open streams",
    )
    options = parser.parse_args()
    plan = QUICK if options.quick else FULL
    skip = {name.strip() for name in options.skip.split(",") if name.strip()}
    unknown = skip - {"litellm", "nginx"}
    if unknown:
        parser.error(f"--skip: unknown peer(s) {', '.join(sorted(unknown))}; choose litellm, nginx")
    only = {name.strip().upper() for name in options.only.split(",") if name.strip()}

    if (os.cpu_count() or 1) < 2:
        print("this benchmark needs 2 cores (proxy on core 0, load and upstream on core 1)", file=sys.stderr)
        return 2
    os.sched_setaffinity(0, {LOAD_CORE})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 20000), hard), hard))

    started = time.time()
    machine_before, own_before = machine_busy_seconds(), own_seconds()
    time.sleep(1.0)
    foreign = machine_busy_seconds() - machine_before - (own_seconds() - own_before)
    if foreign > 0.1:
        print(f"warning: other processes are using {foreign:.2f} cores: figures will be noisy", flush=True)
    machine_before, own_before, wall_before = machine_busy_seconds(), own_seconds(), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="toolmodel-bench-") as tmp:
        workdir = Path(tmp)
        bench = Bench(plan, skip, only, workdir)
        bench.check_tools()
        try:
            bench.start()
            time.sleep(1.0)
            bench.results["idle_rss_kb"] = {name: rss_kb(s.pid) for name, s in bench.services.items()}
            figures = {
                "A": bench.figure_a,
                "B": bench.figure_b,
                "C": bench.figure_c,
                "D": bench.figure_d,
                "F": bench.figure_f,
            }
            for figure, method in figures.items():
                if figure in only:
                    print(f"== figure {figure}", flush=True)
                    method()
            if options.profile:
                print("== profiles of our proxy", flush=True)
                bench.results["profiles"] = profile_cpu(bench, 3.0 if options.quick else 6.0)
                bench.results["profiles"]["memory"] = profile_memory(bench)
        except BaseException:
            for service in [*bench.services.values(), bench.upstream]:
                if service is not None and service.process is not None and service.process.poll() is not None:
                    print(f"{service.name} had exited: {service.tail()}", file=sys.stderr)
            raise
        finally:
            bench.stop()
        if "E" in only:  # alone on the machine: the proxy figures' services are gone
            print("== figure E", flush=True)
            bench.figure_e()
        results = bench.results
    # Everything this run started has been stopped and reaped, so its CPU is in own_seconds():
    # the rest of the machine's busy time belongs to other processes, which skew the figures.
    wall = time.monotonic() - wall_before
    other = machine_busy_seconds() - machine_before - (own_seconds() - own_before)
    results["other_processes"] = {"cpu_seconds": other, "wall_seconds": wall, "cores": other / wall}

    info = machine()
    rows = build_rows(results)
    table = markdown(rows)
    print()
    print(table)
    print()
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, Linux {info['kernel']}")
    print(f"versions: {versions}")
    print(f"mode: {'quick' if options.quick else 'full'}, {time.time() - started:.0f} s")
    other = results["other_processes"]
    quiet = other["cores"] <= 0.05
    print(
        f"other processes on this machine during the run: {other['cores']:.2f} cores on average"
        + ("" if quiet else " — WARNING: the machine was not quiet, figures are skewed; run again when it is")
    )
    out = Path(options.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "mode": "quick" if options.quick else "full",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": info,
        "plan": plan.__dict__,
        "rows": [row.__dict__ for row in rows],
        "table": table,
        "results": results,
    }
    out.write_text(json.dumps(document, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
