"""Several arbiters of one site ([ha]): leases with terms, and the write guard."""
