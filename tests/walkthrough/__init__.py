"""A third-party package, as docs/adding-a-component.md and drivers/README.md describe it:
a driver (``tank``) and a component (``refill``) that touch no file of fieldgate's core.
tests/test_walkthrough.py loads it the way a site would, through ``plugins.modules``."""
