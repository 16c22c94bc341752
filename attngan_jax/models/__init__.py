"""Flax Linen networks of AttnGAN (NHWC, word features (B, T, D))."""
