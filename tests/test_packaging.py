"""What users install: the wheel and the sdist carry every module, install, import and run.

The distributions are built once per session (``python -m build``: the sdist,
then the wheel from the sdist) from a copy of what a fresh clone holds, so a
file that only this working tree has, or stale build output, cannot hide a
gap. Each is installed into a virtual environment of its own, outside the
checkout, the way a user installs it: pip resolves the declared dependencies,
so a module that imports something ``install_requires`` does not name fails
too. The modules to import are derived from the files under ``logship/``, so a
new module is covered without touching this file.

The suite itself must run against the installed package as well; the first
tests check that it does, here and in the children the tests start.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import logship

from procs import REPO, child_env

# Under pytest-xdist (`make test`: --dist loadgroup) these tests share one worker,
# so the distributions are built and installed once.
pytestmark = pytest.mark.xdist_group("packaging")

DISTRIBUTION = "pylogship"
BUILD_TIMEOUT = 300
PIP_TIMEOUT = 300


def under(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it (symlinks resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


# -- the suite runs the installed package ------------------------------------------------------


def test_the_suite_imports_the_installed_logship_not_the_checkout() -> None:
    imported = logship.__file__ or ""
    assert not under(imported, os.path.join(REPO, "logship")), (
        f"logship was imported from this checkout ({imported}), so the suite does not test "
        "what users install: `make test` installs the wheel (`make dev` installs the "
        "checkout in editable mode); run the suite with the .venv/bin/pytest entry point, "
        "not `python -m pytest`, which puts the working directory on sys.path"
    )
    assert under(imported, sysconfig.get_paths()["purelib"]), imported


def test_a_child_imports_the_same_installed_logship() -> None:
    # Started as the tests start children: the environment of child_env, the
    # session's working directory, which `-c` (like `-m`) puts first on sys.path.
    assert not under(os.getcwd(), REPO)
    done = subprocess.run(
        [sys.executable, "-c", "import logship; print(logship.__file__)"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == logship.__file__


# -- building --------------------------------------------------------------------------------


def checkout_files() -> list[str]:
    """The files a fresh clone of this checkout would hold: tracked, or new and not ignored."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot tell a clean checkout's files")
    listed = subprocess.run(
        ["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout: {listed.stderr.strip()}")
    # A file deleted in the working tree stays in the index until committed.
    return sorted(
        {name for name in listed.stdout.split("\0") if os.path.isfile(os.path.join(REPO, name))}
    )


def package_files(files: list[str]) -> list[str]:
    """The files of the ``logship`` package among ``files``: what the wheel must carry."""
    return [name for name in files if name.startswith("logship/") and "__pycache__" not in name]


def module_names(files: list[str]) -> list[str]:
    """Every importable module of the package (``__main__`` runs the CLI: it is run instead)."""
    names = []
    for name in package_files(files):
        if name.endswith(".py") and not name.endswith("/__main__.py"):
            dotted = name[: -len(".py")].replace("/", ".")
            names.append(dotted.removesuffix(".__init__"))
    return names


class Built:
    """The distributions built from a clean copy of the checkout."""

    def __init__(self, files: list[str], sdist: Path, wheel: Path) -> None:
        self.files = files
        self.sdist = sdist
        self.wheel = wheel


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    files = checkout_files()
    source = tmp_path_factory.mktemp("clean-checkout")
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), source / name)
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"python -m build failed:\n{done.stdout[-3000:]}{done.stderr}"
    (sdist,) = out.glob(f"{DISTRIBUTION}-*.tar.gz")
    (wheel,) = out.glob(f"{DISTRIBUTION}-*.whl")
    return Built(files, sdist, wheel)


# -- what the distributions hold ---------------------------------------------------------------


def missing(expected: list[str], present: set[str], what: str) -> None:
    """Fail naming every expected file that is not present."""
    gone = [name for name in expected if name not in present]
    assert not gone, f"{what} leaves out {len(gone)} file(s) of logship/: " + ", ".join(gone)


def test_the_wheel_holds_every_file_of_the_package(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as whl:
        names = set(whl.namelist())
    missing(package_files(built.files), names, built.wheel.name)
    assert "logship/py.typed" in names
    # Nothing else lands in site-packages: no tests/ or benchmarks/ as top-level packages.
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"logship"}, sorted(tops)


def test_the_sdist_holds_every_file_of_the_package(built: Built) -> None:
    with tarfile.open(built.sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing(package_files(built.files), names, built.sdist.name)


# -- installed, each on its own ----------------------------------------------------------------

IMPORT_ALL = """
import importlib, json, sys
failures = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except BaseException as e:
        failures[name] = f"{type(e).__name__}: {e}"
    else:
        if not (module.__file__ or "").startswith(sys.prefix):
            failures[name] = f"imported from {module.__file__}, outside {sys.prefix}"
print(json.dumps(failures))
"""


@pytest.fixture(scope="session", params=["wheel", "sdist"])
def installed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, built: Built
) -> Iterator[Path]:
    """A new virtual environment, outside the checkout, with one distribution installed.

    The environment has no pip of its own (that saves seconds): this
    environment's pip installs into it (``--python``).
    """
    kind = request.param
    venv = tmp_path_factory.mktemp(f"venv-{kind}")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    dist = built.wheel if kind == "wheel" else built.sdist
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", str(dist)],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=venv,
    )
    assert done.returncode == 0, f"pip could not install {dist.name}:\n{done.stderr}"
    yield venv


def run_in(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``args`` with the environment's bin/ first, from inside it, with no PYTHONPATH."""
    env = child_env(PATH=os.pathsep.join([str(venv / "bin"), os.environ.get("PATH", "")]))
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=60, check=False, env=env, cwd=venv
    )


def test_every_module_imports_from_the_installed_distribution(
    installed: Path, built: Built
) -> None:
    modules = module_names(built.files)
    assert "logship.pure" in modules and "logship.cli.demo" in modules
    done = run_in(installed, str(installed / "bin" / "python"), "-I", "-c", IMPORT_ALL, *modules)
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout)
    assert not failures, "modules that do not import once installed:\n" + "\n".join(
        f"  {name}: {why}" for name, why in failures.items()
    )


@pytest.mark.parametrize("command", ["logship", "python -I -m logship"])
def test_the_installed_command_runs(installed: Path, command: str) -> None:
    program, *rest = command.split()
    done = run_in(installed, str(installed / "bin" / program), *rest, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: logship"), done.stdout
    for sub in ("receive", "check", "spill", "demo"):
        assert sub in done.stdout


# -- release metadata --------------------------------------------------------------------------


def test_the_version_is_the_distributions() -> None:
    assert importlib.metadata.version(DISTRIBUTION) == logship.__version__
    assert DISTRIBUTION in importlib.metadata.packages_distributions()["logship"]


def test_the_classifiers_claim_what_is_tested() -> None:
    meta = importlib.metadata.metadata(DISTRIBUTION)
    classifiers = set(meta.get_all("Classifier") or [])
    claimed = sorted(
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    # tools/test-all runs the suite on each version the classifiers claim.
    script = Path(REPO, "tools", "test-all").read_text()
    tested = re.search(r"^VERSIONS=\((.*)\)$", script, re.MULTILINE)
    assert tested is not None
    assert claimed == tested[1].split() == ["3.10", "3.11", "3.12", "3.13"]
    assert meta["Requires-Python"] == ">=3.10"
    assert {
        "Typing :: Typed",
        "License :: OSI Approved :: MIT License",
        "Operating System :: POSIX",
    } <= classifiers


def test_twine_accepts_the_distributions(built: Built) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(built.sdist), str(built.wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


INSTALL_LINE = re.compile(r"pip install[^\n`]*?(?<![\w./-])['\"]?logship\b(?!-)")


def test_install_lines_name_the_distribution() -> None:
    """``logship`` on PyPI is another project: every ``pip install`` names pylogship."""
    wrong = []
    for folder in ("README.md", "CHANGELOG.md", "docs", "examples", "logship", "benchmarks"):
        root = Path(REPO, folder)
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if path.suffix not in (".md", ".py", ".txt", ".cfg") or "results" in path.parts:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if INSTALL_LINE.search(line):
                    wrong.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not wrong, "\n".join(wrong)
