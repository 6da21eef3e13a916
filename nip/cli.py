"""Shared helpers of the Hydra entry points: one-line errors and config pre-flight."""

import signal
import sys
from collections.abc import Callable
from pathlib import Path

from omegaconf.errors import OmegaConfBaseException

from nip.errors import NipError
from nip.utils.signals import StopNow

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = str(ROOT / "conf")
# Sweep presets live in multirun_sweeps/sweep/NAME.yaml and are used as ``+sweep=NAME``.
SWEEPS_SEARCHPATH = f"hydra.searchpath=[file://{ROOT / 'multirun_sweeps'}]"


def with_sweeps_searchpath(argv: list[str]) -> list[str]:
    """``argv`` plus the sweep presets' search path, unless the user set one."""
    if any(a.startswith("hydra.searchpath") for a in argv):
        return argv
    # Hydra's argparse wants all overrides in one run: put it beside the first override.
    first = next((i for i, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
    return [*argv[:first], SWEEPS_SEARCHPATH, *argv[first:]]


def one_line(error: BaseException) -> str:
    """A single line describing ``error`` and its causes (Hydra nests the useful part)."""
    parts = []
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text = str(error).strip().splitlines()
        # OmegaConf chains a copy of its message with unfilled "$VALUE" placeholders.
        if text and text[0] not in parts and "$" not in text[0]:
            parts.append(text[0])
        error = error.__cause__ or error.__context__
    return ": ".join(parts) if parts else "unknown error"


def fail(message: str, *, status: int = 2, prefix: str = "nip: error: ") -> None:
    """Print ``nip: error: message`` (or another prefix) to stderr and exit with ``status``."""
    print(f"{prefix}{message}", file=sys.stderr)
    sys.exit(status)


def preflight(config_name: str, argv: list[str]) -> None:
    """Compose the config once before Hydra runs, so mistakes get a one-line error.

    Hydra reports composition errors over several lines; composing first with Hydra's own
    compose API catches unknown keys, wrong types and unknown group options, and reports them
    in one line. Multirun sweeps and Hydra's own flags are left to Hydra.
    """
    if any(a in ("-h", "--help", "--hydra-help", "--info") for a in argv):
        return
    check_override_grammar(argv)
    if any(a in ("-m", "--multirun") for a in argv):
        return
    # Overrides are the ``key=value`` words (flag values such as ``--cfg job`` have no ``=``);
    # Hydra's own settings are Hydra's business, except the search path for sweep presets.
    overrides = [
        a
        for a in argv
        if "=" in a
        and not a.startswith("-")
        and (a.startswith("hydra.searchpath") or not a.startswith(("hydra.", "hydra/", "+hydra")))
    ]
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        fail(one_line(e))


def check_override_grammar(argv: list[str]) -> None:
    """Parse every ``key=value`` word (Hydra's own settings too) with Hydra's grammar.

    Hydra reports a value it cannot lex (e.g. an unquoted path with non-ASCII letters) over
    several lines; here it is one line with the fix.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for word in argv:
        if "=" not in word or word.startswith("-"):
            continue
        try:
            parser.parse_overrides([word])
        except HydraException:
            key, value = word.split("=", 1)
            fail(
                f"{word}: Hydra cannot read this value; quote it, e.g. {key}='{value}' "
                f"(with the quotes protected from the shell: \"{key}='{value}'\")"
            )


def guarded(task: Callable[[], object]) -> object:
    """Run ``task``, turning user mistakes (``NipError``) into a one-line error and exit 2."""
    try:
        return task()
    except NipError as e:
        fail(
            str(e),
            status=getattr(e, "exit_code", 2),
            prefix=getattr(e, "prefix", "nip: error: "),
        )
    except OmegaConfBaseException as e:
        fail(one_line(e))
    except (KeyboardInterrupt, StopNow) as e:
        # Outside the training loop (which stops cleanly on its own), or a second signal.
        signum = getattr(e, "signum", signal.SIGINT)
        fail(
            f"stopped by {signal.Signals(signum).name}; files written so far are intact "
            "(checkpoints are written atomically)",
            status=128 + signum,
            prefix="nip: ",
        )
