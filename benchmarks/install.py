"""Install the logship wheel and its ``[bench]`` extra for ``make bench``, even if a peer will not.

One package of the extra that cannot be installed here (no wheel for this
Python, a conflict, a registry that does not answer) would make pip refuse
the whole extra, and with it the whole benchmark. So when the extra fails,
the wheel is installed alone, then each requirement on its own; those that
still fail are written, with pip's reason, to :data:`FAILURES`, where
``run.py`` reads them and reports their peers as skipped. Exits 0 when all
is installed, 3 when only some requirements failed (``make`` tries again
next time), 1 when logship or a tool the harness needs failed.

    .venv/bin/python benchmarks/install.py dist/pylogship-*.whl
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Where failures are recorded: in the virtual environment they concern.
FAILURES = os.path.join(sys.prefix, "logship-bench-install.json")
#: Requirements the harness itself imports: without them nothing can run.
HARNESS = ("psutil",)


def bench_requirements(setup_cfg: str = os.path.join(ROOT, "setup.cfg")) -> list[str]:
    """The requirements of the ``[bench]`` extra, as ``setup.cfg`` lists them."""
    cfg = configparser.ConfigParser()
    cfg.read(setup_cfg, encoding="utf-8")
    text = cfg.get("options.extras_require", "bench")
    return [line.strip() for line in text.splitlines() if line.strip()]


def requirement_name(requirement: str) -> str:
    """The project name of a requirement, normalised (PEP 503): ``Foo_Bar>=1`` -> ``foo-bar``."""
    name = re.split(r"[\s\[<>=!~;@]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def pip(args: Sequence[str], pip_args: Sequence[str] = ()) -> str | None:
    """Run ``pip install``; None on success, else the last lines pip wrote."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *pip_args, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode == 0:
        return None
    lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")] or lines
    return " / ".join(errors[-2:]) or f"pip exited with status {proc.returncode}"


def install_each(requirements: Sequence[str], pip_args: Sequence[str] = ()) -> dict[str, str]:
    """Install each requirement on its own; the failures, by normalised name, with pip's reason."""
    reasons = {requirement_name(r): pip([r], pip_args) for r in requirements}
    return {name: reason for name, reason in reasons.items() if reason is not None}


def read_failures(path: str = FAILURES) -> dict[str, str]:
    """What the last install could not install (empty when all went in, or none was recorded)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def not_installed(packages: Sequence[str], failures: dict[str, str]) -> str | None:
    """Why some of ``packages`` are missing, from :func:`read_failures`; None if none failed."""
    names = [n for n in map(requirement_name, packages) if n in failures]
    return "; ".join(f"{n} could not be installed: {failures[n]}" for n in names) or None


def main(argv: Sequence[str]) -> int:
    """Install the wheel ``argv`` names, record what failed, and say so."""
    if len(argv) != 1 or not argv[0].endswith(".whl"):
        print("usage: benchmarks/install.py WHEEL", file=sys.stderr)
        return 2
    wheel = os.path.abspath(argv[0])
    failures: dict[str, str] = {}
    if pip([f"{wheel}[bench]"]) is not None:
        reason = pip([wheel])
        if reason is not None:
            print(f"logship itself could not be installed: {reason}", file=sys.stderr)
            return 1
        failures = install_each(bench_requirements())
    with open(FAILURES, "w", encoding="utf-8") as f:
        json.dump(failures, f, indent=2)
    for name, reason in failures.items():
        print(f"not installed: {name}: {reason}", file=sys.stderr)
    if any(requirement_name(r) in failures for r in HARNESS):
        return 1
    return 3 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
