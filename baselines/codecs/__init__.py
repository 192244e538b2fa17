"""Codecs: each module holds one family; :mod:`baselines.codecs.registry` finds them by name."""
