"""The voice-session core: one session that every front end drives (terminal, benchmark, server).

Give a :class:`~voicechat.voice.session.VoiceSession` a source, a sink, engines and a
conversation; read typed events from it (:mod:`voicechat.voice.events`); send it text,
commands, interrupt and stop.
"""
