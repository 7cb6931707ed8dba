"""Prints docs/reliability.md's table from tests/failure_cases.py (the tests' own table)."""

import runpy
from pathlib import Path

if __name__ == "__main__":
    cases = runpy.run_path(str(Path(__file__).resolve().parent.parent / "tests" / "failure_cases.py"))
    print(cases["markdown_table"]())
