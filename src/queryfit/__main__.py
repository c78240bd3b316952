"""``python -m queryfit``: the same command as ``queryfit``."""

from queryfit.cli import main

if __name__ == "__main__":
    main()
