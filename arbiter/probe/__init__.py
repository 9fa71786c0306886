"""I/O at the edge. Every probe returns a value; a failure is a value too."""
