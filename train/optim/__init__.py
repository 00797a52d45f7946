"""Optimisation: parameter groups, Muon for filters, weight averaging and the learning-rate schedule."""
