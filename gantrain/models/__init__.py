"""Network architectures, one family per module; each exposes a Generator and a Discriminator."""
