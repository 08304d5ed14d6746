"""The team's tracking server (`python -m pipeline.server`) and its PostgreSQL."""
