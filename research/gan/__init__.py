"""GAN experiments: ablation presets and switches (train.py), the log (LOG.md)."""
