"""The model catalogue and voicechat's model folder: names (entries), installed models (store),
downloads (pull), archives (archive), names in engine options (resolve), what fits (recommend)."""
