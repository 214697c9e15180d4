"""`python -m gantrain ...` (and `torchrun -m gantrain ...`) runs the training entry point."""

from gantrain.cli import train

if __name__ == "__main__":
    train()
