import sys

from docker_reroll.cli import main

if __name__ == "__main__":
    sys.exit(main())
