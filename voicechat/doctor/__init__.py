"""`voicechat doctor`: what works on this machine and what to do about what does not.

One module per group of checks (system, config_check, sound, engines, gpu, history_check, remote), each
a function from the resolved config to report lines; :mod:`report` holds the lines, the verdict and the
two renderings (text, JSON); :mod:`runner` runs the groups side by side, each bounded in time."""
