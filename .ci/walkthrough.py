#!/usr/bin/env python3
"""Runs the README's walk-through sections ("Try it", then "Two-step sign-in (TOTP)"),
verbatim, against a running `make dev`.

Every `sh` block of those sections is run in order, in one bash with `set -euo pipefail`, as a
person would paste them. `curl` is wrapped to fail on any 4xx or 5xx answer (printing its body),
so an example that no longer works fails CI. The sections must start from an empty stack (the
one `make dev` gives at each start).

    walkthrough.py [README.md]
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("## Try it", "## Two-step sign-in (TOTP)")


def blocks(readme):
    text = open(readme).read()
    found = []
    for heading in SECTIONS:
        start = text.index(f"\n{heading}\n")
        end = text.find("\n## ", start + 1)
        section = text[start:end if end != -1 else None]
        section_blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
        assert section_blocks, f"no sh block under {heading!r} in {readme}"
        found += section_blocks
    return found


def main():
    readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "README.md")
    found = blocks(readme)
    script = "\n".join(
        ["set -euo pipefail", 'curl() { command curl --fail-with-body --max-time 300 "$@"; echo; }']
        + [f"echo '--- block {n}'\n{block}" for n, block in enumerate(found, 1)]
    )
    # From the project root, as a person who just ran `make dev` in it.
    result = subprocess.run(["bash", "-c", script], cwd=ROOT)
    status = "passed" if result.returncode == 0 else "failed"
    print(f"walkthrough: {len(found)} blocks {status}")
    print(f"walkthrough: {1 if status == 'passed' else 0} passed, {0 if status == 'passed' else 1} failed")
    sys.exit(result.returncode)


if __name__ == "__main__":
    main()
