"""voicechat: a command-line voice assistant that streams from microphone to speaker."""

__version__ = "0.1.0"
