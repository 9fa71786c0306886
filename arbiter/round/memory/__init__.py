"""What the loop keeps and records: the ledger (every write to the store, bounded, in
order), the maintenance pauses, TILT's notices, and the running config (``current``).
Imports nothing else of the round."""
