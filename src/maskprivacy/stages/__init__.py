"""One thin entry per stage: ``run(config, inputs, outputs, log)`` (see :mod:`.entry`)."""
