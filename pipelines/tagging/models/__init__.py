"""Tag models: one family per module, a common wrapper (:mod:`.base`), honest evaluation and the training loop."""
