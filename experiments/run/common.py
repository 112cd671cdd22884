"""Plumbing every experiment script shares: dataclass Args -> command line, atomic writes, devices."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from labelchain.envs.atomic import atomic_write_json, atomic_write_text  # noqa: F401  (re-exported for scripts)

REPO_ROOT = Path(__file__).resolve().parents[2]  # experiments/run/common.py -> the checkout

T = TypeVar("T")


def flag_name(name: str) -> str:
    """The command-line flag of an Args field: `rl_lr` -> `--rl-lr`."""
    return "--" + name.replace("_", "-")


# A deprecated field name -> its new name, or (new name, how an old value becomes a new one: it may
# raise ValueError with a one-line message). An Args class declares `RENAMED: ClassVar[Renames]`;
# mixins' and subclasses' tables merge (`renamed_fields`).
Renames = dict[str, Any]  # values: str | tuple[str, Callable[[Any], Any]] (plain Any: hints resolve anywhere)


def renamed_fields(args_class: type) -> dict[str, tuple[str, Callable[[Any], Any] | None]]:
    """Every deprecated field name of `args_class` (its own `RENAMED` and its bases'), old -> (new, convert)."""
    merged: dict[str, Any] = {}
    for klass in reversed(args_class.__mro__):
        merged.update(vars(klass).get("RENAMED", {}))
    renamed = {old: (new, None) if isinstance(new, str) else new for old, new in merged.items()}
    names = {spec.name for spec in dataclasses.fields(args_class)} if dataclasses.is_dataclass(args_class) else set()
    clash = sorted(old for old, (new, _) in renamed.items() if old in names or new not in names)
    if names and clash:  # a programming error in the table, caught by any script's first parse
        raise TypeError(f"{args_class.__qualname__}.RENAMED: {clash} must be old names of present fields")
    return renamed


def _renamed_argv(args_class: type, argv: list[str], fail: Callable[[str], typing.NoReturn]) -> list[str]:
    """`argv` with deprecated flags spelled the new way, one line on stderr for each ("--out is now
    --out-dir"); `--no-old` becomes `--no-new`, and a converted flag's value is converted."""
    renamed = renamed_fields(args_class)
    if not renamed:
        return list(argv)
    spellings = {flag_name(old): old for old in renamed} | {"--no-" + old.replace("_", "-"): old for old in renamed}
    words, told, index = [], set(), 0
    while index < len(argv):
        word = argv[index]
        index += 1
        flag, equals, inline = word.partition("=")
        old = spellings.get(flag)
        if old is None or word == "--":
            words.append(word)
            continue
        new, convert = renamed[old]
        new_flag = flag_name(new) if flag == flag_name(old) else "--no-" + new.replace("_", "-")
        if old not in told:
            print(f"{flag} is now {new_flag}", file=sys.stderr)
            told.add(old)
        if convert is None:
            words.append(new_flag + equals + inline)
            continue
        if not equals:
            if index >= len(argv):
                fail(f"argument {flag}: expected one argument")
            inline, index = argv[index], index + 1
        try:
            words += [new_flag, str(convert(inline))]
        except ValueError as error:
            fail(f"argument {flag}: {error}")
    return words


def rename_old_fields(args_class: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """A saved dict of Args fields (a run folder's config.json, a --config file) with deprecated
    names under their new ones, so folders written before a rename still load; one line on stderr each."""
    values = dict(values)
    for old, (new, convert) in renamed_fields(args_class).items():
        if old not in values:
            continue
        if new in values:
            raise ValueError(
                f"{where}: fields {old!r} and {new!r} are the same field (its old and new name); keep {new!r}"
            )
        value = values.pop(old)
        try:
            values[new] = value if convert is None or value is None else convert(value)
        except ValueError as error:
            raise ValueError(f"{where}: field {old!r}: {error}") from None
        print(f"{where}: field {old!r} is now {new!r}", file=sys.stderr)
    return values


def out_to_out_dir(name: str) -> Callable[[Any], Any]:
    """The deprecated `--out PATH` of grid `name` (its results file or stem) as `--out-dir`: PATH's
    folder, when PATH names the grid's own file (`experiments/results/trees` -> `experiments/results`)."""

    def convert(value: Any) -> Any:
        if value is None or str(value).lower() == "none":
            return value
        path = Path(str(value))
        if path.with_suffix("").name != name:
            raise ValueError(
                f"{value}: the results file is now <--out-dir>/{name}.json; give --out-dir {path.parent} "
                f"(and rename {path.with_suffix('').name}.* there to {name}.*)"
            )
        return str(path.parent)

    return convert


def parse_args(args_class: type[T], argv: list[str] | None = None, defaults: T | None = None) -> T:
    """Build an argparse parser from a dataclass: one `--field-name` flag per field, help from docs.

    Booleans take `--flag/--no-flag`; list fields take several values (`none` alone = empty list);
    `X | None` fields accept "none". `defaults` (an instance) replaces the dataclass defaults, so
    flags given on the command line override it (train_rl's --config). The result knows which
    fields were typed on the command line (`given_fields`), whatever their values. A deprecated
    spelling (the class's `RENAMED`) is accepted with one line saying the new one.
    """
    parser = _parser(args_class, defaults)
    argv = _renamed_argv(args_class, sys.argv[1:] if argv is None else argv, parser.error)
    values = vars(parser.parse_args(argv))
    for key, value in values.items():  # "--list-flag none" means an empty list
        if isinstance(value, list) and [str(v).lower() for v in value] == ["none"]:
            values[key] = []
    for action in parser._actions:  # parse again with no defaults: what remains was typed
        action.default = argparse.SUPPRESS
    typed = set(vars(parser.parse_args(argv)))
    return mark_given(args_class(**values), typed)


class _OneLineParser(argparse.ArgumentParser):
    """A bad flag ends in one line naming it (argparse would print the whole usage block first)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _parser(args_class: type, defaults: Any) -> argparse.ArgumentParser:
    hints = typing.get_type_hints(args_class)
    renamed = renamed_fields(args_class)
    epilog = ", ".join(f"{flag_name(old)} (now {flag_name(new)})" for old, (new, _) in renamed.items())
    parser = _OneLineParser(
        description=(args_class.__doc__ or "").strip(),
        epilog=f"old spellings still accepted: {epilog}" if epilog else None,
    )
    for field in dataclasses.fields(args_class):
        flag = flag_name(field.name)
        if defaults is not None:
            default = getattr(defaults, field.name)
        else:
            default = (
                field.default_factory()  # type: ignore[misc,operator]
                if field.default is dataclasses.MISSING
                else field.default
            )
        hint = hints[field.name]
        help_text = field.metadata.get("help", "")
        base, optional = _unwrap_optional(hint)
        if base is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif typing.get_origin(base) in (list, tuple):
            (item,) = set(typing.get_args(base)) - {Ellipsis}
            parser.add_argument(flag, nargs="+", type=item, default=default, help=help_text)
        else:
            parser.add_argument(
                flag, type=_converter(base, optional), default=default, help=f"{help_text} (default: {default})"
            )
    return parser


_GIVEN = "_given_fields"  # attribute (not a field) of an Args built from a command line


def mark_given(args: T, names: set[str]) -> T:
    """Record that fields `names` of `args` were chosen explicitly (typed, or read from a --config file)."""
    setattr(args, _GIVEN, frozenset(names))
    return args


def given_fields(args: Any) -> set[str]:
    """Fields chosen explicitly: those recorded by `parse_args` / `mark_given`, else (an Args built
    in Python) those that differ from the dataclass defaults."""
    recorded = getattr(args, _GIVEN, None)
    if recorded is not None:
        return set(recorded)
    defaults = type(args)()
    return {spec.name for spec in dataclasses.fields(args) if getattr(args, spec.name) != getattr(defaults, spec.name)}


def args_from_json(args_class: type[T], path: str | Path, flag: str = "--config") -> T:
    """An Args instance from a JSON object of its fields (unknown fields and wrong types are errors
    naming the file and the field; fields left out keep their defaults)."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"{flag} {path}: cannot read it ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag} {path}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    return args_from_dict(args_class, values, f"{flag} {path}")


def args_from_dict(args_class: type[T], values: Any, where: str) -> T:
    """An Args instance from a dict of its fields, checked as `args_from_json` checks them; errors
    start with `where` (the file, or the flag and the file). The result records those fields as given."""
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a JSON object of {args_class.__module__}.Args fields")
    values = rename_old_fields(args_class, values, where)
    hints = typing.get_type_hints(args_class)
    names = {spec.name for spec in dataclasses.fields(args_class)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown fields {unknown}")
    for name, value in values.items():
        if not _json_fits(value, hints[name]):
            raise ValueError(f"{where}: field {name!r} should be {hints[name]}, got {value!r}")
    return mark_given(args_class(**values), set(values))


def _json_fits(value: Any, hint: Any) -> bool:
    base, optional = _unwrap_optional(hint)
    if value is None:
        return optional
    if typing.get_origin(base) in (list, tuple):
        (item,) = set(typing.get_args(base)) - {Ellipsis}
        return isinstance(value, list) and all(_json_fits(v, item) for v in value)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, base)


def command_line(args: Any, script: str, skip: tuple[str, ...] = ("progress",)) -> str:
    """The command that reproduces `args` (a dataclass Args) with `script`: defaults are left out.

    The inverse of `parse_args`: booleans as --flag/--no-flag, lists as several values (an empty
    list as "none"), None as "none".
    """
    words, defaults = ["python", script], type(args)()
    for spec in dataclasses.fields(args):
        value = getattr(args, spec.name)
        if spec.name in skip or value == getattr(defaults, spec.name):
            continue
        flag = flag_name(spec.name)
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + spec.name.replace("_", "-"))
        elif isinstance(value, list):
            words += [flag, *map(str, value)] if value else [flag, "none"]
        else:
            words += [flag, "none" if value is None else str(value)]
    return shlex.join(words)


def results_dir(out_dir: str | None, runs_dir: str, quick: bool) -> Path:
    """Where a grid script's results files go: --out-dir, else RUNS_DIR/quick with --quick (a smoke
    test must not overwrite the committed tables), else experiments/results."""
    if out_dir is not None:
        return Path(out_dir)
    return Path(runs_dir) / "quick" if quick else REPO_ROOT / "experiments" / "results"


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value) of results over seeds."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def percent_mean_std(mean: float, std: float, n: int) -> str:
    """×100, two decimals: '45.21 ± 0.35'; a single seed has no ± part."""
    text = f"{100 * mean:.2f}"
    return text if n < 2 else f"{text} ± {100 * std:.2f}"


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    args = typing.get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def _converter(base: Any, optional: bool):
    def convert(text: str):
        if optional and text.lower() == "none":
            return None
        return base(text)

    convert.__name__ = getattr(base, "__name__", "value")
    return convert


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str):
    """--device auto|cpu|cuda -> torch.device (auto = cuda if available); a clear error otherwise."""
    import torch

    if name not in DEVICES:
        raise SystemExit(f"--device must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return torch.device(name)
