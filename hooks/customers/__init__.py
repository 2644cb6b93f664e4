"""Customer plugin folders: ``plugins: {customer: <name>}`` loads ``<name>/__init__.py``."""
