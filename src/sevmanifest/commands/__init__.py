"""One module per ``sevm`` sub-command; see ``sevmanifest.cli``."""
