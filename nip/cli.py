"""Shared helpers of the Hydra entry points: one-line errors and config pre-flight."""

import argparse
import importlib.util
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from omegaconf.errors import OmegaConfBaseException

from nip.errors import NipError
from nip.utils.signals import StopNow

ROOT = Path(__file__).resolve().parent.parent


def shipped_dir(package: str, source_dir: str) -> Path:
    """The directory of YAML files installed as ``package``, else ``source_dir`` of the checkout.

    conf/ and multirun_sweeps/ stay at the top of the repository; a wheel installs them as
    the data packages ``nip._conf`` and ``nip._sweeps`` (pyproject.toml maps them). An
    editable install or a bare checkout has no such directory beside ``nip/``, so the
    checkout's own directory is used and edits to it take effect without reinstalling.
    Hydra gets a plain directory either way: its ``pkg://`` source wants an ``__init__.py``
    in the config package, which conf/ does not have.
    """
    try:
        spec = importlib.util.find_spec(package)
    except ImportError:
        spec = None
    # A wheel's nip/_conf is a namespace package: its directory is its one search location.
    locations = spec.submodule_search_locations if spec is not None else None
    for location in locations or []:
        if Path(location).is_dir():
            return Path(location)
    return ROOT / source_dir


def hydra_quoted(text: str) -> str:
    """``text`` as a quoted string of Hydra's override grammar.

    Unquoted, a path with spaces, commas or non-ASCII letters cannot be parsed (and every
    command adds the sweep presets' path). Within quotes only the quote character and the
    backslashes before it (or before the closing quote) need escaping.
    """
    escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
    return f"'{escaped}'"


CONFIG_DIR = str(shipped_dir("nip._conf", "conf"))
# Sweep presets live in multirun_sweeps/sweep/NAME.yaml and are used as ``+sweep=NAME``.
SWEEPS_DIR = shipped_dir("nip._sweeps", "multirun_sweeps")
SWEEPS_SEARCHPATH = f"hydra.searchpath=[{hydra_quoted(f'file://{SWEEPS_DIR}')}]"


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
        # OmegaConf chains a copy of its message with unfilled "$VALUE" placeholders, and
        # errors whose text an earlier part already quotes (the KeyError of a bad choice).
        if text and not any(text[0] in part for part in parts) and "$" not in text[0]:
            parts.append(text[0])
        error = error.__cause__ or error.__context__
    return ": ".join(parts) if parts else "unknown error"


def fail(message: str, *, status: int = 2, prefix: str = "nip: error: ") -> None:
    """Print ``nip: error: message`` (or another prefix) to stderr and exit with ``status``."""
    print(f"{prefix}{message}", file=sys.stderr)
    sys.exit(status)


# Largest number of compositions the pre-flight check makes for the values of sweeps.
MAX_PREFLIGHT_COMPOSITIONS = 64


def _flag_value(argv: list[str], short: str, long: str) -> str | None:
    """The value of ``-x VALUE``, ``--long VALUE`` or ``--long=VALUE`` in ``argv``."""
    for i, word in enumerate(argv):
        if word in (short, long) and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith(long + "="):
            return word.split("=", 1)[1]
    return None


def _sweep_variants(overrides: list[str]) -> list[list[str]]:
    """Concrete override lists that together try every value of every sweep once.

    A sweep (``key=a,b``, ``range(...)``, ``choice(...)``) cannot be composed as it is; the
    first variant takes each sweep's first value, and each further one changes one sweep to
    another of its values.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    sweeps: dict[int, list[str]] = {}
    for i, word in enumerate(overrides):
        override = parser.parse_overrides([word])[0]
        if override.is_sweep_override():
            key = word.split("=", 1)[0]
            # The iterator's strings are quoted where Hydra's grammar needs it.
            sweeps[i] = [f"{key}={value}" for value in override.sweep_string_iterator()]
    base = [sweeps[i][0] if i in sweeps else word for i, word in enumerate(overrides)]
    variants = [base]
    for i, values in sweeps.items():
        for value in values[1:]:
            variants.append([*base[:i], value, *base[i + 1 :]])
    return variants[:MAX_PREFLIGHT_COMPOSITIONS]


def preflight(config_name: str, argv: list[str]) -> None:
    """Compose the config before Hydra runs, so mistakes get a one-line error.

    Hydra reports composition errors over several lines; composing first with Hydra's own
    compose API catches unknown keys, wrong types and unknown group options, and reports them
    in one line. The config name and directories of ``-cn``, ``-cd`` and ``-cp`` are used;
    sweeps (``key=a,b``) are composed value by value. Hydra's own settings are Hydra's.
    """
    if any(a in ("-h", "--help", "--hydra-help", "--info") for a in argv):
        return
    check_override_grammar(argv)
    config_dir = CONFIG_DIR
    config_path = _flag_value(argv, "-cp", "--config-path")
    if config_path is not None:
        if not Path(config_path).is_absolute():
            return  # relative to the calling module: Hydra's business
        config_dir = config_path
    config_name = _flag_value(argv, "-cn", "--config-name") or config_name
    search_path = [f"file://{SWEEPS_DIR}"]
    extra_dir = _flag_value(argv, "-cd", "--config-dir")
    if extra_dir is not None:
        # Hydra searches --config-dir first: the primary config may live there.
        extra = Path(extra_dir).resolve()
        if (extra / f"{config_name}.yaml").is_file():
            search_path.append(f"file://{config_dir}")
            config_dir = str(extra)
        else:
            search_path.append(f"file://{extra}")
    # Overrides are the ``key=value`` words (flag values such as ``--cfg job`` have no ``=``).
    overrides = [
        a
        for a in argv
        if "=" in a
        and not a.startswith("-")
        and not a.startswith(("hydra.", "hydra/", "+hydra", "++hydra"))
    ]
    overrides.append(f"hydra.searchpath=[{','.join(map(hydra_quoted, search_path))}]")
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            for variant in _sweep_variants(overrides):
                compose(config_name, overrides=variant)
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


def parse_args(schema: type, argv: list[str], doc: str) -> object | None:
    """``key=value`` arguments read into a ``schema`` dataclass instance.

    ``-h`` / ``--help`` prints ``doc`` and the arguments with their defaults and returns
    ``None`` (not a ``key=value`` argument, but the console scripts answer it).

    Raises
    ------
    NipConfigError
        One line for an unknown key, a wrong type or a missing required value.
    """
    from omegaconf import OmegaConf

    from nip.errors import NipConfigError

    if any(a in ("-h", "--help") for a in argv):
        defaults = OmegaConf.to_yaml(OmegaConf.structured(schema)).rstrip()
        print(f"{doc.strip()}\n\nArguments (key=value; ??? = required):\n{defaults}")
        return None
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_dotlist(argv))
        return OmegaConf.to_object(merged)
    except Exception as e:  # OmegaConf's errors for unknown keys, types, missing values
        raise NipConfigError(one_line(e)) from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors (``nip: error: ...``, exit status 2).

    ``synopsis`` (e.g. ``SWEEP_DIR [--out DIR]``) follows the program's name in the hint
    each error ends with. Abbreviated flags are refused: a typo must not pass for another flag.
    """

    def __init__(self, *args, synopsis: str = "", **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.synopsis = synopsis

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (usage: {self.prog} {self.synopsis}; see --help)")
        raise AssertionError("fail() exits")  # for type checkers: fail() never returns


def program_name(script: str, module: str) -> str:
    """How the user called us: the console script's name, or ``python -m <module>``."""
    return script if Path(sys.argv[0]).name == script else f"python -m {module}"
