"""What every command shares: its entry and stops, retries, files, sources, provenance,
MNIST's facts."""
