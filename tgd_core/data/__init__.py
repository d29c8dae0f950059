"""Images in, arrays out: datasets (:mod:`.datasets`), image checks and loading
(:mod:`.images`), CIFAR-10-C corruptions (:mod:`.corruptions`) and the normalisation of network
inputs (:mod:`.normalization`)."""
