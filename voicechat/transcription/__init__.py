"""Transcribing recordings: long files in bounded memory (longform), transcript formats (formats) and the
subtitle cues they are cut into (subtitles)."""
