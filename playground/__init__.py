"""Generative Models Playground: one folder per model family on a thin shared core."""
