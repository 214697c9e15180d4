"""Sample-quality metrics (FID, KID, Inception Score, precision/recall) and the extractors that feed them."""
