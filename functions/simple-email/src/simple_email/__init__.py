"""Job function for the simple-email task."""
