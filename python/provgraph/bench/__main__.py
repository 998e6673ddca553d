"""`python -m provgraph.bench <scenario>`: the load harness entry point."""

from __future__ import annotations

import sys

SCENARIOS = {"graph": "provgraph.bench.graph_http", "graph-inproc": "provgraph.bench.graph_inproc",
             "decide": "provgraph.bench.decide", "actions": "provgraph.bench.actions",
             "writer": "provgraph.bench.writer", "frontends": "provgraph.bench.frontends",
             "fairness": "provgraph.bench.fairness", "storage": "provgraph.bench.storage"}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = f"usage: python -m provgraph.bench {{{','.join(SCENARIOS)}}} [options]  (--help per scenario)"
    if args and args[0] in ("-h", "--help"):
        print(usage)
        return 0
    if not args or args[0] not in SCENARIOS:
        print(usage, file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(SCENARIOS[args[0]])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
