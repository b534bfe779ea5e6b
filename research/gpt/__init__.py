"""GPT experiments: the research trainer (train.py) with a validation split carved from the
training novels and an EMA of the weights, so a run's choices are made without the held-out
novel (see research/gpt-prose.md)."""
