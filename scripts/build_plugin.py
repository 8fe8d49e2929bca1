#!/usr/bin/env python3
"""Build the plugin as one executable file: a zip of the package with a shebang (a Python zipapp).

The shebang names this interpreter by its absolute path, with -IS (isolated, no site-packages: the runtime is the
standard library only), so the plugin starts as fast as Python can and does not depend on PATH, virtualenvs or
pyenv shims. Beside each module the zip holds its bytecode, compiled by that interpreter: Python cannot cache the
bytecode of modules imported from a zip, and compiling them all again cost each run about 0.1 s of CPU. The
bytecode is unchecked (the zip is built in one go, so it always matches its source); an interpreter of another
version ignores it and compiles the source.
"""

import argparse
import os
import stat
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.join(HERE, "..", "src", "docker_reroll")
MAIN = "from docker_reroll.cli import console_main\nconsole_main()\n"
# Run by the shebang's interpreter: compiles argv[2:] into the directory argv[1], each as NAME.pyc
COMPILE = """
import os, py_compile, sys
for source in sys.argv[2:]:
    name = os.path.basename(source)
    py_compile.compile(source, cfile=os.path.join(sys.argv[1], name + "c"), dfile="docker_reroll/" + name,
                       doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def build(output: str, interpreter: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    temporary = output + ".tmp"
    with open(temporary, "wb") as handle:
        handle.write(f"#!{interpreter} -IS\n".encode())
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("__main__.py", MAIN)
            modules = sorted(name for name in os.listdir(PACKAGE) if name.endswith(".py"))
            with tempfile.TemporaryDirectory() as compiled:
                subprocess.run([interpreter, "-IS", "-c", COMPILE, compiled,
                                *(os.path.join(PACKAGE, name) for name in modules)], check=True)
                for name in modules:
                    archive.write(os.path.join(PACKAGE, name), f"docker_reroll/{name}")
                    archive.write(os.path.join(compiled, name + "c"), f"docker_reroll/{name}c")
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
