"""Keras Tuner searches over depth and width of reskeras specs.

Not implemented yet (tracked as the tuning issue); nothing here pretends to work.
"""
