"""`voicechat talk`: the live conversation (sources, the pipeline, keyboard input, rendering)."""
