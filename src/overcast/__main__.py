"""`python -m overcast`: the same as the `overcast` command."""

from overcast.cmd.main import main

if __name__ == "__main__":
    main()
