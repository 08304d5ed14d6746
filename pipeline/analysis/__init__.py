"""Statistics: intervals and tests, overfitting's onset, a run's figures."""
