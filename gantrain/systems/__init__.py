"""GAN systems: the System contract, the families (GAN, CycleGAN) and the maths only they use: losses, penalties,
EMA, ADA, DiffAugment, latent codes. The Trainer drives any of them."""
