"""Runs one `hbehavemae <command>` with several flag sets in one process; prints the results.

Usage: `python command_cases.py <command module> <cases.json>` where the JSON file holds a
list of argument lists. Each case is parsed from the command's defaults (absl flags are
reset between cases), then the command's `main` runs. One JSON line per case is printed:
`{"argv": [...], "status": int | null, "stderr": "...", "traceback": "..." | null}`.

A process per command, rather than per case, keeps the slow tier short: importing Keras and
a backend takes most of a command's time.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
import traceback


def run_case(module, argv: list[str]) -> dict:
    from absl import flags

    flag_values = flags.FLAGS
    flag_values.unparse_flags()
    stderr, stdout = io.StringIO(), io.StringIO()
    status, trace = None, None
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            arguments = ["hbehavemae", *argv]
            if hasattr(module, "join_multi_value_flags"):
                arguments = module.join_multi_value_flags(arguments)
            parser = getattr(module, "parse_flags", None)
            remaining = parser(arguments) if parser else flag_values(arguments)
            status = module.main(remaining)
    except flags.Error as error:  # absl rejects the flag itself (status 1 under app.run)
        status, trace = 1, None
        stderr.write(f"FATAL Flags parsing error: {error}\n")
    except SystemExit as error:
        status = error.code if isinstance(error.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported to the test, which fails on it
        trace = traceback.format_exc()
    return {"argv": argv, "status": status, "stderr": stderr.getvalue(), "traceback": trace}


def main() -> None:
    module = importlib.import_module(f"keras_hbehavemae.cli.{sys.argv[1]}")
    module.define_flags()
    with open(sys.argv[2]) as file:
        cases = json.load(file)
    for argv in cases:
        print(json.dumps(run_case(module, argv)), flush=True)


if __name__ == "__main__":
    main()
