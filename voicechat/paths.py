"""Where voicechat keeps its files (platform config, data and cache dirs).

Each can be moved with an environment variable: VOICECHAT_CONFIG_DIR,
VOICECHAT_DATA_DIR, VOICECHAT_CACHE_DIR (tests use these).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "voicechat"


def _dir(env: str, kind: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    import platformdirs

    return Path(getattr(platformdirs, f"user_{kind}_dir")(APP, appauthor=False))


def config_dir() -> Path:
    return _dir("VOICECHAT_CONFIG_DIR", "config")


def data_dir() -> Path:
    return _dir("VOICECHAT_DATA_DIR", "data")


def cache_dir() -> Path:
    return _dir("VOICECHAT_CACHE_DIR", "cache")


def user_config_file() -> Path:
    return config_dir() / "config.yaml"


def history_db() -> Path:
    return data_dir() / "history.sqlite3"
