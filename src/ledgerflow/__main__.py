"""``python -m ledgerflow``: the command line."""

from ledgerflow.cli import main

if __name__ == "__main__":
    main()
