"""Customer plugins: the business hooks and their dispatcher (see spec.py)."""
