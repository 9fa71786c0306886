"""What the round publishes: the frozen ``View`` of the last round, ``/status``, the
Prometheus metrics, and the gates' log. Outputs import neither views nor acts."""
