"""``nip`` as a built wheel and as an editable install, driven through its console scripts.

The wheel is built offline (no build isolation) from a copy of the checkout and installed
with ``--no-deps`` into a fresh venv that sees this venv's packages through a ``.pth`` file,
so nothing is downloaded or installed twice. The scripts then run from an unrelated
directory: the configs and sweep presets must come from the installed package.
"""

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.test_cli import ROOT, tiny

# What a wheel is built from; build outputs go to the copy, not the shared checkout.
SOURCES = ["pyproject.toml", "README.md", "MANIFEST.in", "nip", "conf", "multirun_sweeps"]
SCRIPTS = ["nip-run", "nip-evaluate", "nip-summarize", "nip-visualise", "nip-probe", "nip-report"]


def run(*args: str | Path, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a command with this session's ``PYTHONPATH`` dropped (it could reach the checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def check(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``result``, after asserting it succeeded (its output tails are the failure message)."""
    assert result.returncode == 0, (
        f"{result.args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def copy_sources(dest: Path) -> Path:
    """The files a wheel is built from, copied so the build leaves the checkout untouched."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, dest / name)
    return dest


def fresh_venv(path: Path) -> Path:
    """A venv without pip whose interpreter also sees this interpreter's installed packages.

    A path in a ``.pth`` file is appended to ``sys.path``, but ``.pth`` files inside it are
    not run, so this venv's editable ``nip`` (a finder installed by such a file) stays out.
    pip itself comes from there too.
    """
    check(run(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent))
    python = path / "bin" / "python"
    site = run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=path)
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (Path(check(site).stdout.strip()) / "outer_site_packages.pth").write_text(
        "".join(f"{p}\n" for p in ours)
    )
    return python


def pip_install(python: Path, *args: str | Path) -> None:
    # --ignore-installed: the outer venv's nip is visible as installed; never touch it.
    check(
        run(
            python,
            *("-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed"),
            *("--disable-pip-version-check", "--quiet", *args),
            cwd=python.parent,
            timeout=300,
        )
    )


def where_is(python: Path, cwd: Path) -> dict[str, Path]:
    """Where the venv's ``nip``, its configs and its sweep presets are."""
    code = (
        "import nip, nip.cli; "
        "print(nip.__file__); print(nip.cli.CONFIG_DIR); print(nip.cli.SWEEPS_DIR)"
    )
    lines = check(run(python, "-c", code, cwd=cwd)).stdout.split("\n")
    return {k: Path(v).resolve() for k, v in zip(("nip", "conf", "sweeps"), lines, strict=False)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    try:
        backend = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        backend = None
    if backend is None or tuple(int(x) for x in backend.split(".")[:2]) < (70, 1):
        pytest.skip(
            f"building offline needs setuptools>=70.1 in this venv (found {backend}): without "
            "build isolation pip uses the venv's own build backend"
        )
    base = tmp_path_factory.mktemp("wheel")
    source = copy_sources(base / "src")
    check(
        run(
            sys.executable,
            *("-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index"),
            *("--disable-pip-version-check", "--quiet", "-w", base / "dist", source),
            cwd=base,
            timeout=300,
        )
    )
    (built,) = (base / "dist").glob("nip-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The bin directory of a fresh venv with the wheel installed."""
    base = tmp_path_factory.mktemp("installed")
    python = fresh_venv(base / "venv")
    pip_install(python, wheel)
    return python.parent


def test_wheel_ships_every_module_and_config(wheel):
    # pyproject.toml lists the packages by hand (conf/ and multirun_sweeps/ are mapped into
    # nip/); a new package under nip/ must be added there.
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "nip").rglob("*.py")}
    for source, installed in (("conf", "nip/_conf"), ("multirun_sweeps", "nip/_sweeps")):
        expected |= {
            f"{installed}/{p.relative_to(ROOT / source).as_posix()}"
            for p in (ROOT / source).rglob("*.yaml")
        }
    assert not expected - names, "missing from the wheel; add the package in pyproject.toml"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{s} = " in scripts for s in SCRIPTS), scripts


def test_installed_package_uses_its_own_configs(installed, tmp_path):
    venv = installed.parent.resolve()
    found = where_is(installed / "python", tmp_path)
    assert found["nip"].is_relative_to(venv), f"imported the wrong nip: {found['nip']}"
    assert found["conf"].is_relative_to(venv) and (found["conf"] / "config.yaml").is_file()
    assert (found["sweeps"] / "sweep" / "gi_seeds.yaml").is_file()
    assert found["sweeps"].is_relative_to(venv)


def test_nip_run_trains_from_anywhere(installed, tmp_path):
    run_dir = tmp_path / "run"
    settings = tiny(run_dir, tmp_path / "cache")
    settings += ["scenario.prover.num_gnn_layers=1", "scenario.verifier.num_gnn_layers=1"]
    check(run(installed / "nip-run", *settings, cwd=tmp_path, timeout=300))
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Two training iterations, then the final test row.
    assert [r["iteration"] for r in rows] == [0, 1, 2] and "test_mean_accuracy" in rows[2]


def test_nip_run_finds_sweep_presets(installed, tmp_path):
    result = check(run(installed / "nip-run", "--cfg", "job", "+sweep=gi_seeds", cwd=tmp_path))
    assert "seed: 8144" in result.stdout
    paths = check(run(installed / "nip-run", "--info", "searchpath", cwd=tmp_path)).stdout
    venv = installed.parent.as_posix()
    assert f"file://{venv}/" in paths and "/nip/_conf" in paths and "/nip/_sweeps" in paths


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_scripts_answer_help(installed, tmp_path, script):
    result = check(run(installed / script, "--help", cwd=tmp_path))
    assert result.stdout.strip()


def test_editable_install_reads_the_checkouts_configs(tmp_path):
    # What `make install` does: `pip install -e .`; an edit to conf/ applies without reinstall.
    source = copy_sources(tmp_path / "src").resolve()
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, "--no-build-isolation", "--editable", source)
    found = where_is(python, tmp_path)
    assert found["nip"] == source / "nip" / "__init__.py"
    assert found["conf"] == source / "conf" and found["sweeps"] == source / "multirun_sweeps"
    config = source / "conf" / "config.yaml"
    config.write_text(config.read_text() + "seed: 4242\n")
    job = check(run(tmp_path / "venv" / "bin" / "nip-run", "--cfg", "job", cwd=tmp_path)).stdout
    assert "seed: 4242" in job
