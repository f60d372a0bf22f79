"""The error of weights that cannot be found, read or fitted: one line that says what to do."""


class WeightsError(RuntimeError):
    """Weights that are not available (offline, not cached), unreadable, or do not fit the model."""
