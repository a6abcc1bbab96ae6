"""A conversation: what the model sees of it (memory), the chat turn (chat), the history that keeps it
(history, with turnlog as its fallback), and the in-session commands (slash). Shared by `chat`, `talk` and
`serve`; it knows nothing of audio."""
