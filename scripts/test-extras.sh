#!/usr/bin/env bash
# Test-only set-up: the Coqui TTS extra, so its test runs for real in CI.
#
# torch is pinned first to the CPU build (a plain `torch` requirement would pull
# several GB of CUDA packages). The torchaudio wheels reachable here are CUDA-linked
# and coqui-tts imports torchaudio at module level; deleting torchaudio's native
# libraries makes it import in pure-Python mode, which is all synthesis needs.
# This workaround belongs to the test machines, not to the voicechat package.
set -euo pipefail
PY="$1"
"$PY" -m pip install -q "torch==2.13.0"
"$PY" -m pip install -q "coqui-tts>=0.27" six "torchaudio==2.11.0" "torchcodec==0.17.0"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -f "$SITE"/torchaudio/lib/*.so
"$PY" -c "import TTS.api" >/dev/null
