"""What the tests share besides fixtures: the repository's root, and the command server the `cli` fixture runs."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
