#!/usr/bin/env python3
"""Build the plugin as one executable file: a zip of the package with a shebang (a Python zipapp).

The shebang names this interpreter by its absolute path, with -IS (isolated, no site-packages: the runtime is the
standard library only), so the plugin starts as fast as Python can and does not depend on PATH, virtualenvs or
pyenv shims.
"""

import argparse
import os
import stat
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "src", "docker_reroll")
MAIN = "from docker_reroll.cli import console_main\nconsole_main()\n"


def build(output: str, interpreter: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    temporary = output + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(f"#!{interpreter} -IS\n".encode())
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("__main__.py", MAIN)
            for name in sorted(os.listdir(PACKAGE)):
                if name.endswith(".py"):
                    archive.write(os.path.join(PACKAGE, name), f"docker_reroll/{name}")
    os.chmod(temporary, os.stat(temporary).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(temporary, output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="where to write the executable, e.g. ~/.docker/cli-plugins/docker-reroll")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the shebang (default: this one)")
    args = parser.parse_args()
    build(os.path.expanduser(args.output), os.path.realpath(args.python))
    print(f"installed {args.output}")


if __name__ == "__main__":
    main()
