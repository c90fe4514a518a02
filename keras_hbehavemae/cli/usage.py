"""`--help` for every command: the command's description and its flags with the defaults
that apply to the given arguments, exit status 0.

absl's own `--help` describes the program's `__main__` module, which for an installed
console script is the script wrapper, and exits with status 1. `run_command` handles
`-h`/`--help`/`--helpshort`/`--helpfull` itself: it parses the other arguments (so that,
for example, `--dataset mabe_mice --help` or `--size base --help` shows that choice's
defaults), asks the command for its effective defaults, and prints every flag of the
command (absl's and TensorFlow's own flags, such as `--verbosity`, are left out unless
the command uses them, as `pretrain` does `--log_dir`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import app, flags

HELP_ARGUMENTS = ("-h", "-?", "--help", "--helpshort", "--helpfull", "--help=true")


def wants_help(argv: Sequence[str]) -> bool:
    return any(argument in HELP_ARGUMENTS for argument in argv[1:])


def _command_flags(flag_values: flags.FlagValues, shared: Sequence[str]) -> list:
    """The flags this package defines (not absl's or TensorFlow's), plus the `shared` ones."""
    chosen, seen = [], set()
    for module, module_flags in flag_values.flags_by_module_dict().items():
        own = str(module).startswith(("keras_hbehavemae", "__main__", "scripts"))
        for flag in module_flags:
            if (own or flag.name in shared) and flag.name not in seen:
                seen.add(flag.name)
                chosen.append(flag)
    return sorted(chosen, key=lambda flag: flag.name)


def help_text(description: str, flag_values: flags.FlagValues, defaults: dict[str, Any],
              shared: Mapping[str, str] | None = None) -> str:
    """The description, then every command flag with its (effective) default."""
    for name, value in defaults.items():
        if name in flag_values and not flag_values[name].present and value is not None:
            try:
                flag_values.set_default(name, value)
            except (flags.Error, ValueError, TypeError):
                pass  # a placeholder the flag's parser does not take; its help says it
    lines = [description.strip(), "", "flags:"]
    shared = dict(shared or {})
    for flag in _command_flags(flag_values, list(shared)):
        default = flag.default_as_str if flag.default is not None else None
        text = " ".join(str(shared.get(flag.name) or flag.help).split())
        lines.append(f"  --{flag.name}: {text}")
        if default not in (None, "''", '""'):
            lines.append(f"    (default: {default})")
    return "\n".join(lines) + "\n"


def run_command(main: Callable, argv: Sequence[str], description: str, *,
                flag_values: flags.FlagValues = flags.FLAGS,
                effective_defaults: Callable[[flags.FlagValues], dict] | None = None,
                shared: Mapping[str, str] | None = None,
                flags_parser: Callable | None = None) -> None:
    """`app.run(main, argv)`, except that a help argument prints `help_text` and exits 0."""
    if not wants_help(argv):
        if flags_parser is None:
            app.run(main, argv=list(argv))
        else:
            app.run(main, argv=list(argv), flags_parser=flags_parser)
        return
    rest = [argument for argument in argv if argument not in HELP_ARGUMENTS]
    try:
        flag_values(rest, known_only=True)
    except flags.Error as error:
        print(f"note: {error}", file=sys.stderr)
        flag_values.mark_as_parsed()
    defaults: dict[str, Any] = {}
    if effective_defaults is not None:
        try:
            defaults = effective_defaults(flag_values)
        except (ValueError, KeyError, OSError) as error:
            print(f"note: cannot work out the defaults for these arguments ({error})",
                  file=sys.stderr)
    sys.stdout.write(help_text(description, flag_values, defaults, shared))
    sys.stdout.flush()
    sys.exit(0)
