"""All of doctor's checks, in the order they are shown, each group bounded in time."""

from __future__ import annotations

from voicechat.doctor.report import Line
from voicechat.doctor.runner import Group, run_groups


def diagnose(config_file: str | None, *, load: bool = False, echo: bool = False) -> list[Line]:
    from voicechat.doctor import config_check, engines, gpu, history_check, remote, sound, system

    cfg, config_lines = config_check.load(config_file)
    groups = [
        Group("system", system.check, 10.0),
        Group(
            "sound",
            lambda: sound.check(cfg, echo),
            sound.SECONDS + sound.ECHO_SECONDS + 5.0,
            needed=True,
        ),
        Group("engines", lambda: engines.check(cfg), 60.0, needed=True),
        Group("gpu", lambda: gpu.check(cfg), 30.0),
        Group("history", lambda: history_check.check(cfg), history_check.CONNECT_S + 10.0),
        Group("remote", lambda: remote.check(cfg), remote.TIMEOUT_S * 3 + 5.0, needed=True),
    ]
    lines = config_lines + run_groups(groups)
    if load:  # after the others: loading competes with nothing else for the cores
        lines += run_groups([Group("load", lambda: engines.load(cfg), engines.LOAD_SECONDS * 3, needed=True)])
    return lines
