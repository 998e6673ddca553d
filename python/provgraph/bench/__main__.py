"""`python -m provgraph.bench <scenario>`: the load harness entry point."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    scenarios = {"graph": "provgraph.bench.graph_http", "graph-inproc": "provgraph.bench.graph_inproc",
                 "decide": "provgraph.bench.decide", "actions": "provgraph.bench.actions",
                 "frontends": "provgraph.bench.frontends"}
    if not args or args[0] not in scenarios:
        print(f"usage: python -m provgraph.bench {{{','.join(scenarios)}}} [options]  (--help per scenario)")
        return 2
    import importlib

    module = importlib.import_module(scenarios[args[0]])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
