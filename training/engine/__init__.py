"""The training engine: one experiment from its spec to its result (data to tokens, model, Trainer,
best checkpoint, test evaluation, accounting), and the launcher that runs it in a subprocess."""
