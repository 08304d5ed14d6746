"""MNIST as a reproducible pipeline: download -> preprocess -> train -> evaluate."""


class PipelineError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do."""
