"""How good a network is: metrics and robustness sweeps (:mod:`.metrics`) and what the app
shows of networks on a few images (:mod:`.inspection`)."""
