"""Sample-quality metrics (FID, KID, Inception Score, precision/recall), the extractors that feed them, and what
gantrain-eval does with them (scoring.py)."""
