"""`python -m provgraph.bench frontends`: the HTTP front ends side by side — capacity (wrk, keep-alive,
the server on one core) and server CPU per request for /healthz, Q1 and /decide, and the P1 mix
verdicts at 1x and 3x peak — for each candidate of the start-up flag service.http."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import psutil

from provgraph.bench.actions import PEAK_RPS, action_keys, p1_run, verdict_line
from provgraph.bench.graph_http import (
    LOAD_CORE,
    GraphBench,
    _query_requests,
    q1_body,
    start_loaded_server,
)
from provgraph.bench.report import format_table, to_markdown, write_json
from provgraph.bench.workloads import generate_g1
from provgraph.flags import SPECS, profile_values

__all__ = ["main", "parse_wrk", "wrk_script"]

COLUMNS = ["front_end", "round", "endpoint", "req_per_s", "cpu_us_per_req", "p50_ms", "p99_ms", "requests", "errors"]
_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk_script(requests: list[tuple[str, str, bytes | None, str | None]]) -> str:
    """A wrk Lua script that sends `requests` (method, path, body, bearer key) round robin."""
    def lua_str(b: bytes | str) -> str:
        raw = b.encode() if isinstance(b, str) else b
        return '"' + "".join(f"\\{c:03d}" for c in raw) + '"'

    rows = []
    for method, path, body, key in requests:
        headers = "{}" if key is None else (
            '{["Authorization"] = ' + lua_str(f"Bearer {key}") + ', ["Content-Type"] = "application/json"}')
        rows.append("{" + ", ".join([lua_str(method), lua_str(path), headers,
                                     "nil" if body is None else lua_str(body)]) + "}")
    return ("local reqs = {\n" + ",\n".join(rows) + "\n}\nlocal i = 0\n"
            "request = function()\n  i = i % #reqs + 1\n  local r = reqs[i]\n"
            "  return wrk.format(r[1], r[2], r[3], r[4])\nend\n"
            "local bad = 0\nresponse = function(status, headers, body)\n"
            "  if status ~= 200 then bad = bad + 1 end\nend\n"
            'done = function(summary, latency, requests)\n  io.write("non-200: ", bad, "\\n")\nend\n')


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests, req/s, latency percentiles and non-200 answers from wrk --latency output."""
    def latency(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
        return float(m.group(1)) * _UNITS_MS[m.group(2)] if m else float("nan")

    total = re.search(r"(\d+) requests in", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    bad = re.search(r"non-200: (\d+)", text)
    errors = (int(bad.group(1)) if bad else 0) + (sum(int(g) for g in socket_errors.groups()) if socket_errors else 0)
    return {"requests": int(total.group(1)) if total else 0, "req_per_s": float(rate.group(1)) if rate else 0.0,
            "p50_ms": latency("50"), "p99_ms": latency("99"), "errors": errors}


def _server_cpu(pid: int) -> float:
    """CPU seconds of the server process and any children it started."""
    proc = psutil.Process(pid)
    total = float(sum(proc.cpu_times()[:2]))
    for child in proc.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            pass
    return total


def capacity(bench: GraphBench, script: Path, path: str, seconds: float, connections: int) -> dict[str, Any]:
    """wrk (pinned to the load core) against the server (pinned to its own core) for `seconds`."""
    assert bench.server.proc is not None
    pid = bench.server.proc.pid
    cpu0 = _server_cpu(pid)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script),
           f"http://127.0.0.1:{bench.server.port}{path}"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", str(LOAD_CORE), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    cpu = _server_cpu(pid) - cpu0
    res = parse_wrk(out)
    res["cpu_us_per_req"] = cpu / res["requests"] * 1e6 if res["requests"] else float("nan")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m provgraph.bench frontends", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small graph, short runs, no 3x P1 run")
    ap.add_argument("--candidates", default=",".join(SPECS["service.http"].choices),
                    help="values of service.http to compare")
    ap.add_argument("--wrk-seconds", type=float, default=None)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--p1-seconds", type=float, default=None, help="seconds per P1 run (0: skip P1)")
    ap.add_argument("--rounds", type=int, default=2, help="each candidate measured this many times, alternating")
    ap.add_argument("--out", default="bench-results/frontends")
    a = ap.parse_args(argv)
    if shutil.which("wrk") is None:
        print("python -m provgraph.bench frontends needs wrk (Debian: apt-get install wrk)")
        return 2
    candidates = [c.strip() for c in a.candidates.split(",") if c.strip()]
    for c in candidates:
        if c not in SPECS["service.http"].choices:
            ap.error(f"unknown front end {c!r}: one of {list(SPECS['service.http'].choices)}")
    wrk_s = a.wrk_seconds or (3.0 if a.quick else 10.0)
    p1_s = a.p1_seconds if a.p1_seconds is not None else (4.0 if a.quick else 30.0)
    factors = (1,) if a.quick else (1, 3)
    nodes, edges = (5_000, 50_000) if a.quick else (200_000, 2_000_000)
    bench = start_loaded_server(generate_g1(nodes=nodes, edges=edges, tenants=20))
    workdir = Path(tempfile.mkdtemp(prefix="provgraph-frontends-"))
    rows: list[dict[str, Any]] = []
    verdicts: list[dict[str, Any]] = []
    try:
        keys = action_keys(bench)
        scripts: dict[str, list[tuple[str, str, bytes | None, str | None]]] = {
            "/healthz": [("GET", "/healthz", None, None)],
            "q1": [("POST", p, b, k) for p, b, k in _query_requests(bench, q1_body, 1024, 1)],
            "decide": [("POST", p, b, k) for p, b, k in keys["decide"][:1024]],
        }
        paths = {name: reqs[0][1] for name, reqs in scripts.items()}
        for name, reqs in scripts.items():
            (workdir / f"{name.strip('/')}.lua").write_text(wrk_script(reqs))
        base = f"http://127.0.0.1:{bench.server.port}"
        for rnd in range(a.rounds):
            order = candidates if rnd % 2 == 0 else candidates[::-1]
            for cand in order:
                bench.apply_flags({**profile_values("optimized"), "service.http": cand}, restart=True)
                for name in scripts:
                    res = capacity(bench, workdir / f"{name.strip('/')}.lua", paths[name], wrk_s, a.connections)
                    rows.append({"front_end": cand, "round": rnd + 1, "endpoint": name, **res})
                    print(f"  {cand} #{rnd + 1} {name}: {res['req_per_s']:,.0f} req/s, "
                          f"{res['cpu_us_per_req']:.1f} µs server CPU/request, p99 {res['p99_ms']:.2f} ms, "
                          f"errors {res['errors']}", flush=True)
                if p1_s > 0:
                    for f in factors:
                        run = p1_run(base, keys, PEAK_RPS * f, p1_s, 1.0 if a.quick else 3.0)
                        verdicts.append({"front_end": cand, "round": rnd + 1, "factor": f, **run})
                        print(verdict_line(f"{cand} #{rnd + 1} P1 {f}x", run["verdict"]), flush=True)
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(format_table(rows, COLUMNS))
    for v in verdicts:
        print(verdict_line(f"{v['front_end']} #{v['round']} P1 {v['factor']}x", v["verdict"]))
    out = Path(a.out)
    write_json(out / "frontends.json", {"capacity": rows, "p1": verdicts, "wrk_seconds": wrk_s,
                                        "connections": a.connections, "p1_seconds": p1_s})
    (out / "frontends.md").write_text(to_markdown(rows, COLUMNS) + "\n\n" + "\n".join(
        verdict_line(f"{v['front_end']} #{v['round']} P1 {v['factor']}x", v["verdict"]) for v in verdicts) + "\n")
    print(f"wrote {out / 'frontends.json'}")
    return 0
