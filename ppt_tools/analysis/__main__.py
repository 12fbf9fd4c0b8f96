# Copyright 2026 The PPT-DeiT authors. Licensed under the Apache License, Version 2.0.
"""`ppt-analysis <command> [options]`; `ppt-analysis <command> --help` lists a command's
options. Bad input prints `ppt_analysis <command>: error: <message>` and exits with 2."""

from __future__ import annotations

import difflib
import sys

from ppt_tools.core.arguments import parse_into, run_command

from . import policy, score_table, sweep, visualize


COMMANDS = {
    "sweep": (sweep.SweepArguments, sweep.run),
    "score-table": (score_table.ScoreTableArguments, score_table.run),
    "policy-stats": (policy.PolicyStatsArguments, policy.run_policy_stats),
    "calibrate": (policy.CalibrateArguments, policy.run_calibrate),
    "visualize": (visualize.VisualizeArguments, visualize.run),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        given = argv[0] if argv else None
        close = difflib.get_close_matches(given, COMMANDS, n=1) if given else []
        problem = f"unknown command {given!r}" if given and given not in ("-h", "--help") else "a command is needed"
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        stream = sys.stdout if given in ("-h", "--help") else sys.stderr
        print(f"usage: ppt-analysis {{{','.join(COMMANDS)}}} [options]\n"
              + (f"ppt_analysis: error: {problem}{hint}; choose one of {', '.join(COMMANDS)}"
                 if stream is sys.stderr else __doc__.strip()), file=stream)
        return 0 if stream is sys.stdout else 2
    command, options = argv[0], argv[1:]
    arguments_class, run = COMMANDS[command]
    prog = f"ppt_analysis {command}"
    return run_command(prog, lambda: run(parse_into(arguments_class, options, prog)))


if __name__ == "__main__":
    raise SystemExit(main())
