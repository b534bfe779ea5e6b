"""Experiments beside the product: probes, presets that did not ship and their switches, logs.

Research code may import from ``playground``; ``playground`` never imports from here.
"""
