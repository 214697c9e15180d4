"""Training: the Trainer (the loop only) and what it runs on: its settings, clock, optimizer steps, checkpoints,
distributed processes, stop signals and divergence watch, objective (best value, early stopping), summary, loggers."""
