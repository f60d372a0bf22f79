"""The featdistill version, kept low so that every module (the card, the CLI) can name it."""

__version__ = "0.1.0"
