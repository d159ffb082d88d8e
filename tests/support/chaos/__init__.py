"""The chaos suite's stack of real processes and the customer that drives it."""
