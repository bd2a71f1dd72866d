"""Measurements of trained networks: evaluation, spike and operation counts, energy, statistics over seeds."""
