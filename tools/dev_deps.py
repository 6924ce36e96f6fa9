"""Prints the development dependencies (pyproject.toml's `dev` extra, or the extra named by the first
argument: `oracles`, `oracles-no-deps`), one per line: the lists the Makefile installs into both virtual
environments (.venv and .venv-cuda), besides torch."""
import pathlib
import sys

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    try:
        import tomli as tomllib
    except ModuleNotFoundError:
        sys.exit("tools/dev_deps.py needs Python >= 3.11 (tomllib) or the tomli package")

pyproject = pathlib.Path(__file__).resolve().parent.parent / "pyproject.toml"
with open(pyproject, "rb") as f:
    extra = sys.argv[1] if len(sys.argv) > 1 else "dev"
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"][extra]))
