"""The exit codes of the ``arbiter`` commands, in one place (each command's help says
which it uses)."""

EXIT_OK = 0
EXIT_SPLIT = 1  # `arbiter check`: a split brain is seen
EXIT_OPERATOR = 1  # `arbiter status`/`release`: something waits for an operator
EXIT_ERROR = 2  # cannot judge or cannot do it: bad config or option, unreachable, SSH failed
