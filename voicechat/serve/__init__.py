"""`voicechat serve`: the assistant as a service (OpenAI-compatible routes, a WebSocket voice session, a web page).

- :mod:`.state`: what one server process holds (engines loaded once, limits, sessions, metrics)
- :mod:`.shared`: engines shared by many clients, one call at a time per engine
- :mod:`.admission`: the bounded pool every request's engine work goes through (503 past it)
- :mod:`.openai_routes`: /v1/audio/transcriptions, /v1/audio/speech, /v1/chat/completions, /v1/models
- :mod:`.voice_ws` and :mod:`.wsio`: the live voice session over a WebSocket (the same VoiceSession as `talk`)
- :mod:`.app`: the FastAPI application: auth, health, readiness, metrics, the page
"""
