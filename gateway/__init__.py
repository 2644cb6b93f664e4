"""fieldgate: an edge gateway daemon for energy sites."""

__version__ = "0.1.0"
