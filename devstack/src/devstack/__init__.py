"""Local development stack for the knative jobs toolkit."""
