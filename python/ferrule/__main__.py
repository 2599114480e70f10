"""`python -m ferrule` and the `ferrule` console script."""

import signal
import sys


def main() -> None:
    # The server handles SIGINT itself (a graceful stop); Python's KeyboardInterrupt
    # handler would only get in the way once control returns here.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from ferrule._ferrule import main as run

    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
