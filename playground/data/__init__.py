"""Data loaders shared by more than one family (faces for the VAE and the GAN)."""
