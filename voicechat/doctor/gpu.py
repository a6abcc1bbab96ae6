"""The GPU: whether there is one, and for each engine whether it is used, and if not, why."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicechat.doctor.report import OK, WARN, Line

if TYPE_CHECKING:
    from voicechat.config import Config

CUDNN = ("libcudnn.so.9", "libcudnn.so.8", "libcudnn.so")
CUBLAS = ("libcublas.so.12", "libcublas.so.11", "libcublas.so")


@dataclass
class Facts:
    """What the machine and the installed libraries say; gathered by :func:`facts`, read by :func:`lines_from`."""

    gpu: str | None = None  # the GPU's name (nvidia-smi), or None when none was found
    cudnn: bool = False
    cublas: bool = False
    ctranslate2_cuda: bool = False  # faster-whisper can use it
    onnx_cuda: bool = False  # Piper can use it
    llama_offload: bool = False  # llama.cpp was built with a GPU backend
    engines: dict[str, str] = field(default_factory=dict)  # kind -> the configured local engine


def _loads(names: tuple[str, ...]) -> bool:
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def _gpu_name() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            done = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, timeout=5, text=True)
            name = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
            if name:
                return name
        except (OSError, subprocess.TimeoutExpired):
            pass
    if os.path.exists("/dev/nvidia0") or os.path.exists("/proc/driver/nvidia/version"):
        return "an NVIDIA GPU"
    return None


def facts(cfg: Config) -> Facts:
    f = Facts(gpu=_gpu_name(), engines={"stt": cfg.stt.engine, "llm": cfg.llm.engine, "tts": cfg.tts.engine})
    if f.gpu is None:
        return f  # nothing else to learn: every engine runs on the CPU
    f.cudnn, f.cublas = _loads(CUDNN), _loads(CUBLAS)
    try:
        import ctranslate2

        f.ctranslate2_cuda = int(ctranslate2.get_cuda_device_count()) > 0
    except Exception:  # not installed, or its CUDA libraries do not load
        pass
    try:
        import onnxruntime

        f.onnx_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:
        pass
    try:
        import llama_cpp

        f.llama_offload = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        pass
    return f


def check(cfg: Config) -> list[Line]:
    return lines_from(facts(cfg), cfg)


def lines_from(f: Facts, cfg: Config) -> list[Line]:
    if f.gpu is None:
        return [Line("gpu", "gpu", OK, "no NVIDIA GPU found; every engine runs on the CPU", data={"gpu": None})]
    lines = [Line("gpu", "gpu", OK, f"{f.gpu}; cuBLAS {'found' if f.cublas else 'missing'}, cuDNN {'found' if f.cudnn else 'missing'}")]
    if f.engines.get("stt") == "faster-whisper":
        if cfg.stt.device == "cpu":
            lines.append(Line("gpu", "speech-to-text", WARN, "on the CPU: stt.device is cpu", "set stt.device to auto or cuda"))
        elif not f.ctranslate2_cuda:
            lines.append(
                Line(
                    "gpu",
                    "speech-to-text",
                    WARN,
                    "on the CPU: CTranslate2 sees no CUDA device" + ("" if f.cudnn and f.cublas else " (cuBLAS 12 / cuDNN 9 not found)"),
                    "pip install nvidia-cublas-cu12 nvidia-cudnn-cu12 and put their lib folders on LD_LIBRARY_PATH",
                )
            )
        else:
            lines.append(
                Line("gpu", "speech-to-text", OK, f"on the GPU ({cfg.stt.compute_type if cfg.stt.compute_type != 'auto' else 'float16'})")
            )
    if f.engines.get("llm") == "llama-cpp":
        if not f.llama_offload:
            lines.append(
                Line(
                    "gpu",
                    "chat",
                    WARN,
                    "on the CPU: this llama-cpp-python was built without CUDA",
                    'reinstall it with CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python',
                )
            )
        elif cfg.llm.gpu_layers == 0:
            lines.append(Line("gpu", "chat", WARN, "on the CPU: llm.gpu_layers is 0", "set llm.gpu_layers to -1 (all layers) or a number"))
        else:
            lines.append(Line("gpu", "chat", OK, f"on the GPU ({'all' if cfg.llm.gpu_layers < 0 else cfg.llm.gpu_layers} layers)"))
    if f.engines.get("tts") == "piper":
        if cfg.tts.device == "cpu":
            lines.append(Line("gpu", "voice", OK, "on the CPU: tts.device is cpu (Piper is fast enough there)"))
        elif not f.onnx_cuda:
            lines.append(
                Line(
                    "gpu",
                    "voice",
                    OK,
                    "on the CPU: onnxruntime has no CUDA provider (Piper is fast enough there; pip install onnxruntime-gpu for the GPU)",
                )
            )
        else:
            lines.append(Line("gpu", "voice", OK, "on the GPU (onnxruntime CUDA)"))
    return lines
