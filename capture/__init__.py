"""vcon-capture: live calls in, IETF vCons out."""

__version__ = "0.1.0"
