"""What a trained run is used for: samples, pictures of its latent space, CycleGAN translation, export with a model
card."""
