"""GAN systems: the networks and the maths of one family; the Trainer drives any of them."""
