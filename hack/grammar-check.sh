#!/usr/bin/env bash
# `make grammar-check`: every dialect's decode-time constraint grammar in the llguidance releases
# vLLM pins (its guidance backend) and in xgrammar, vLLM's default structured-output backend
# (tests/grammar_check/check_xgrammar.py says what is checked). Optional and not part of
# `make test`, which runs the same grammars in the current llguidance and stays free of torch.
#
# It runs in its own venv, .cache/grammar-check/venv (ignored by git), made on the first run:
#   * torch, real, the CPU build: `import xgrammar` imports torch (its token-bitmask helpers use
#     it; nothing here calls them). On this project's machines pip takes torch==2.13.0+cpu from the
#     wheel on disk (about 190 MB; 750 MB installed). Elsewhere PyPI's Linux torch is the CUDA
#     build, several GB with its nvidia-* wheels: set TORCH_SPEC to a CPU wheel you have (a path).
#   * xgrammar with --no-deps, then the dependencies it imports (apache-tvm-ffi, pydantic, numpy,
#     typing-extensions, transformers): its metadata also asks for triton on Linux x86_64, a GPU
#     kernel compiler of about 1 GB that only its CUDA bitmask path loads.
#   * the project itself (editable) and pytest.
# Later runs reuse the venv (seconds to start); `rm -rf .cache/grammar-check` starts over.
#
# XGRAMMAR_VERSION picks the release: vLLM 0.34 pins 0.2.8 (0.2.5.post1 has Grammar.from_lark
# but not GrammarCompiler.compile_lark, which vLLM calls). Arguments are passed to pytest:
# `make grammar-check ARGS='-k hermes -x'`.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
XGRAMMAR_VERSION=${XGRAMMAR_VERSION:-0.2.8}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
CACHE=.cache/grammar-check
VENV=$CACHE/venv
STAMP=$VENV/.installed-xgrammar-$XGRAMMAR_VERSION

if [[ ! -f $STAMP || pyproject.toml -nt $STAMP ]]; then
    echo "grammar-check: installing xgrammar $XGRAMMAR_VERSION and $TORCH_SPEC (CPU) into $VENV ..." >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet "$TORCH_SPEC"
    "$VENV/bin/pip" install --quiet --no-deps "xgrammar==$XGRAMMAR_VERSION"
    "$VENV/bin/pip" install --quiet "apache-tvm-ffi>=0.1.11" pydantic numpy "typing-extensions>=4.9.0" \
        "transformers>=4.38.0" pytest pytest-asyncio -e .
    if "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.version.cuda is None)'; then
        echo "grammar-check: note: torch is a CUDA build (set TORCH_SPEC for a CPU wheel)" >&2
    fi
    touch "$STAMP"
fi

# The same grammars in each llguidance release vLLM pins (guidance backend): 0.7 for vLLM 0.10 and
# 0.11, 1.3 for 0.12 to 0.20, 1.7 for 0.34. Each in a venv of its own holding llguidance alone.
"$VENV/bin/python" tests/grammar_check/dump_grammars.py "$CACHE/grammars.json"
for release in ${LLGUIDANCE_VERSIONS:-0.7.30 1.3.0 1.7.0}; do
    LLG=$CACHE/llguidance-$release
    if [[ ! -x $LLG/bin/python ]]; then
        "$PYTHON" -m venv "$LLG"
        "$LLG/bin/pip" install --quiet "llguidance==$release"
    fi
    "$LLG/bin/python" tests/grammar_check/check_llguidance.py "$CACHE/grammars.json"
done

"$VENV/bin/python" -c 'import importlib.metadata as m; print("grammar-check: xgrammar", m.version("xgrammar") + ", torch", m.version("torch"))'
exec "$VENV/bin/pytest" -p no:cacheprovider tests/grammar_check/check_xgrammar.py "$@"
