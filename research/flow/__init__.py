"""flow research: measurements behind the "Fit an energy" view (see LOG.md)."""
