"""Entropy modelling (learned tables, frozen as integers) and the coder glue."""
