"""``nip.report``: the page of a run (config, curves, test figures, episodes) and of a sweep,
checked in a real headless browser; its one-line refusals."""

import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nip.report import ABSENT, config_differences, flatten, main
from tests.helpers import TINY_DATA_OVERRIDES
from tests.test_summarize import finished_job

ROOT = Path(__file__).resolve().parent.parent
IMG = 'src="data:image/png;base64,'
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def final_test(run_dir: Path) -> dict:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [row for row in rows if "test_mean_accuracy" in row][-1]


def table_cell(page: str, statistic: str) -> str:
    """The value cell beside ``statistic`` in the page's tables."""
    match = re.search(rf"<td>{re.escape(html.escape(statistic))}</td><td[^>]*>([^<]*)</td>", page)
    assert match, statistic
    return match.group(1)


def test_flatten_and_differences_from_the_defaults():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": None,
    }
    run = {"seed": 1, "trainer": {"lr": 0.1, "name": "ppo"}, "protocol": {"rounds": 4}}
    defaults = {"seed": 1, "trainer": {"lr": 0.3, "name": "ppo"}, "protocol": {}}
    assert config_differences(run, defaults) == [
        ("trainer.lr", 0.3, 0.1),
        ("protocol.rounds", ABSENT, 4),
    ]


def test_run_report_holds_config_curves_test_figures_and_episodes(trained_run, tmp_path):
    out = tmp_path / "report.html"
    main([str(trained_run), "--out", str(out), "--episodes", "3"])
    page = out.read_text(encoding="utf-8")
    # Two figures of curves and three episodes, all embedded; nothing fetched, no scripts.
    assert page.count(IMG) == 5
    assert "<script" not in page and "http://" not in page and "https://" not in page
    headings = re.findall(r"<h2>([^<]*)</h2>", page)
    assert headings[:3] == ["Configuration", "Learning curves", "Test"]
    assert headings[3].startswith("Episodes (3 of the test split")
    # The overrides differ from the defaults: default and this run's value side by side.
    assert re.search(r"<td>trainer.num_iterations</td><td[^>]*>5000</td><td[^>]*>1</td>", page)
    assert re.search(r"<td>scenario.num_test_pairs</td><td[^>]*>1000</td><td[^>]*>50</td>", page)
    assert "<td>trainer.lr</td>" not in page  # a default value is not listed
    # The figures are the final test line's.
    test = final_test(trained_run)
    assert table_cell(page, "accuracy (decided rightly)") == f"{test['test_mean_accuracy']:.3f}"
    chance = max(test["test_isomorphic_fraction"], 1 - test["test_isomorphic_fraction"])
    assert table_cell(page, "chance (always the majority label)") == f"{chance:.3f}"
    assert table_cell(page, "episodes") == "50"
    assert "After 1 iterations (finished)" in page
    for label in ("isomorphic", "non_isomorphic"):
        assert f"<td>{label}</td>" in page
    # Per WL score: the examples of each value in the test split add up to those scored.
    strata = re.search(r"<h3>By wl_score</h3>(.*?)</table>", page, re.S).group(1)
    cells = re.findall(r"<tr><td[^>]*>(\d+)</td><td[^>]*>(\d+)</td><td[^>]*>([\d.]+)</td>", strata)
    assert cells, strata
    for value, _, accuracy in cells:
        assert accuracy == f"{test[f'test_accuracy_wl_score_{value}']:.3f}"
    # The episodes are the visualiser's: the first three of the test split, in order.
    assert re.findall(r'<figure id="episode_\d+_datapoint_(\d+).png">', page) == ["0", "1", "2"]


def browser():
    """Headless Chromium through its WebDriver, or a skip (a fail where CI requires it)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"no browser to load the page in: missing {', '.join(missing)}"
        if os.environ.get("NIP_REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # The closed network refuses Chromium's own background connections: switch them off.
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def loaded_images(page: Path) -> tuple[list[dict], list[str], list[str]]:
    """The page's images as the browser decoded them, its section headings, and every
    resource it asked the network for."""
    driver = browser()
    try:
        driver.get(page.resolve().as_uri())
        images = driver.execute_script(
            "return [...document.images].map(i => ({alt: i.alt, complete: i.complete,"
            " width: i.naturalWidth, height: i.naturalHeight}))"
        )
        headings = driver.execute_script(
            "return [...document.querySelectorAll('h2')].map(h => h.textContent)"
        )
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(r => r.name)"
        )
    finally:
        driver.quit()
    return images, headings, fetched


def test_run_report_renders_in_a_browser(trained_run, tmp_path):
    out = tmp_path / "report.html"
    main([str(trained_run), "--out", str(out), "--episodes", "2"])
    images, headings, fetched = loaded_images(out)
    assert [i["alt"] for i in images] == [
        "learning curves",
        "entropies and lengths",
        "episode on datapoint 0",
        "episode on datapoint 1",
    ]
    # Every figure decoded: the three-panel curves are 1500 x 400 pixels (15 x 4 in at 100 dpi).
    assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    assert (images[0]["width"], images[0]["height"]) == (1500, 400)
    assert headings[:3] == ["Configuration", "Learning curves", "Test"]
    assert fetched == []


def test_sweep_report_holds_the_summary_table_and_curves(tmp_path):
    sweep = tmp_path / "sweep"
    finished_job(sweep, 0, ["protocol=nip", "seed=1"], 4, accuracy=0.5)
    finished_job(sweep, 1, ["protocol=debate", "seed=1"], 4, accuracy=0.75)
    main([str(sweep)])
    out = sweep / "report.html"
    page = out.read_text(encoding="utf-8")
    assert page.count(IMG) == 1 and "<script" not in page
    rows = re.findall(
        r"<tr><td>(nip|debate)</td><td[^>]*>1</td><td>1/0/0</td><td>([^<]*)</td>", page
    )
    assert rows == [("nip", "0.500"), ("debate", "0.750")]
    images, headings, fetched = loaded_images(out)
    assert headings == ["Settings", "Learning curves"]
    assert len(images) == 1 and images[0]["complete"] and images[0]["width"] == 1300
    assert fetched == []


def test_report_command_writes_into_the_run_directory(trained_run):
    result = subprocess.run(
        [sys.executable, "-m", "nip.report", str(trained_run), "--episodes", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report written to {trained_run / 'report.html'}"
    assert (trained_run / "report.html").read_text(encoding="utf-8").count(IMG) == 3
    (trained_run / "report.html").unlink()  # the shared run stays as it was trained


def test_bad_input_is_one_line_and_writes_nothing(trained_run, tmp_path, capsys):
    no_checkpoint = tmp_path / "no_checkpoint"
    shutil.copytree(trained_run / ".hydra", no_checkpoint / ".hydra")
    shutil.copy(trained_run / "metrics.jsonl", no_checkpoint)
    damaged = tmp_path / "damaged"
    shutil.copytree(trained_run, damaged)
    (damaged / "checkpoints" / "state.pt").write_bytes(b"not a checkpoint")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a_file").write_text("x")
    cases = {
        "missing": ([str(tmp_path / "nowhere")], "is not a directory"),
        "neither run nor sweep": ([str(tmp_path / "empty")], "neither a run directory"),
        "no checkpoint": ([str(no_checkpoint)], "no checkpoint found"),
        "damaged checkpoint": ([str(damaged)], "state.pt"),
        "no episodes": ([str(trained_run), "--episodes", "0"], "--episodes must be at least 1"),
        "unwritable out": (
            [str(trained_run), "--out", str(tmp_path / "a_file" / "r.html")],
            "cannot write there",
        ),
        "out is a directory": ([str(trained_run), "--out", str(tmp_path)], "is a directory"),
        "unknown flag": ([str(trained_run), "--episode", "3"], "unrecognized arguments"),
    }
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    run_before = sorted(trained_run.rglob("*"))
    for case, (args, message) in cases.items():
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, case
        assert err.startswith("nip: error: ") and err.count("\n") == 1, (case, err)
        assert message in err, (case, err)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert sorted(trained_run.rglob("*")) == run_before


def test_solo_run_report_holds_each_agents_test_accuracy(tmp_path):
    run_dir = tmp_path / "solo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nip.run",
            "trainer=solo_agent",
            "trainer.num_epochs=2",
            *(o for o in TINY_DATA_OVERRIDES if not o.startswith("trainer.")),
            f"cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    main([str(run_dir)])
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert page.count(IMG) == 1  # the solo curves; a solo run plays no episodes
    assert "A solo-agent run plays no episodes" in page and "After 2 epochs (finished)" in page
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    test = rows[-1]
    for agent in ("prover", "verifier"):
        cells = re.search(rf"<tr><td>{agent}</td>((?:<td[^>]*>[^<]*</td>)+)</tr>", page).group(1)
        values = re.findall(r">([^<]*)</td>", cells)
        assert values[0] == f"{test[f'{agent}.test_accuracy']:.3f}"
        assert values[1] == f"{test[f'{agent}.test_accuracy_isomorphic']:.3f}"
