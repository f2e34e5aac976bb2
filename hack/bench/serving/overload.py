#!/usr/bin/env python
"""Overload: thousands of concurrent clients against one `modelfactory-serve` process.

    PYTHONPATH=api/src:serving/src .venv/bin/python hack/bench/serving/overload.py
    .venv/bin/python hack/bench/serving/overload.py --clients 3000 --seconds 30 --model rf
    .venv/bin/python hack/bench/serving/overload.py --root /tmp/mf-prev   # another checkout

Each client is a closed loop on its own keep-alive connection: POST a 1-row OIP v2 request,
wait for the answer, repeat; after a 503 it waits what Retry-After says (capped at 1 s), as a
well-behaved client would. Beside them one prober sends GET /v2/health/live and
/v2/health/ready every 100 ms on its own connection, as a kubelet would: to the health listener
(MF_HEALTH_PORT, the port the chart's probes use) and to the main port (--probe). Prints: answers by
status, errors other than 503/504 (goal 0), latency of admitted (200) requests, probe latency
during the saturation (goal p99 < 100 ms), the server's peak RSS.

The model: `rf` (RandomForest, 100 trees, depth 10, 20 features, as the shared harness's) or
`lr` (LogisticRegression, 20 features). Server settings are its defaults unless given with
--set KEY=VALUE (MF_KEY).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from local_server import ROOT, free_port, reset_peak, start_server, status_kb, write_artifact


def make_model(work: Path, kind: str) -> tuple[str, str, np.ndarray]:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=20000, n_features=20, random_state=0)
    est: Any = (
        RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0)
        if kind == "rf"
        else LogisticRegression(max_iter=1000)
    )
    feats = [{"name": f"f{i}", "dtype": "float64", "kind": "numeric"} for i in range(20)]
    uri, digest = write_artifact(work / kind / "1", est, X, y, feats, "binary")
    return uri, digest, X[:32].astype(np.float32).round(6)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def client(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[bytes],
    end: float,
    statuses: Counter[str],
    latencies: list[float],
    errors: Counter[str],
) -> None:
    loop = asyncio.get_running_loop()
    i = random.randrange(len(bodies))
    while loop.time() < end:
        started = loop.time()
        try:
            async with session.post(
                url, data=bodies[i % len(bodies)], headers={"content-type": "application/json"}
            ) as r:
                await r.read()
                statuses[str(r.status)] += 1
                if r.status == 200:
                    latencies.append(loop.time() - started)
                elif r.status == 503:
                    await asyncio.sleep(
                        min(float(r.headers.get("retry-after", "1")), 1.0)
                        * random.uniform(0.5, 1.0)
                    )
                elif r.status != 504:
                    errors[f"HTTP {r.status}"] += 1
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            statuses["error"] += 1
            errors[type(e).__name__] += 1
            await asyncio.sleep(0.1)
        i += 1


def prober(
    bases: dict[str, str], seconds: float
) -> tuple[dict[str, list[float]], Counter[str], list[tuple[float, str, float]]]:
    """A kubelet: GET both health paths every 100 ms on one keep-alive connection per port
    (`bases`: label -> base URL), 2 s timeout. Runs in a process of its own, so the clients'
    event loop does not delay it."""
    import http.client
    from urllib.parse import urlsplit

    paths = ("/v2/health/live", "/v2/health/ready")
    probes: dict[str, list[float]] = {f"{label} {p}": [] for label in bases for p in paths}
    failures: Counter[str] = Counter()
    slow: list[tuple[float, str, float]] = []
    hosts = {label: urlsplit(base) for label, base in bases.items()}

    def connect(label: str) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(hosts[label].hostname, hosts[label].port, timeout=2)

    conns = {label: connect(label) for label in bases}
    begin = time.monotonic()
    end = begin + seconds
    while time.monotonic() < end:
        tick = time.monotonic()
        for label in bases:
            for path in paths:
                key = f"{label} {path}"
                started = time.monotonic()
                try:
                    conns[label].request("GET", path)
                    r = conns[label].getresponse()
                    r.read()
                    took = time.monotonic() - started
                    probes[key].append(took)
                    if took > 0.1:
                        slow.append((started - begin, key, took))
                    if r.status != 200:
                        failures[f"{key} HTTP {r.status}"] += 1
                except OSError as e:
                    failures[f"{key} {type(e).__name__}"] += 1
                    conns[label].close()
                    conns[label] = connect(label)
        time.sleep(max(0.1 - (time.monotonic() - tick), 0))
    for conn in conns.values():
        conn.close()
    return probes, failures, slow


async def clients_loop(
    url: str, bodies: list[bytes], clients: int, seconds: float
) -> dict[str, Any]:
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        end = asyncio.get_running_loop().time() + seconds
        await asyncio.gather(
            *(
                client(session, url, bodies, end, statuses, latencies, errors)
                for _ in range(clients)
            )
        )
    return {"statuses": statuses, "errors": errors, "latencies": latencies}


def clients_process(
    url: str, bodies: list[bytes], clients: int, seconds: float, nofile: int
) -> dict[str, Any]:
    """One load-generating process: `clients` closed-loop clients for `seconds`."""
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )
    try:
        import uvloop

        out = uvloop.run(clients_loop(url, bodies, clients, seconds))
    except ImportError:
        out = asyncio.run(clients_loop(url, bodies, clients, seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    base: str,
    model: str,
    rows: np.ndarray,
    clients: int,
    procs: int,
    seconds: float,
    pid: int,
    probe_bases: dict[str, str],
) -> dict[str, Any]:
    bodies = [
        json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [1, rows.shape[1]],
                        "datatype": "FP32",
                        "data": row.tolist(),
                    }
                ]
            }
        ).encode()
        for row in rows
    ]
    url = f"{base}/v2/models/{model}/infer"
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    shares = [clients // procs + (i < clients % procs) for i in range(procs)]
    rss_peak = 0
    with ProcessPoolExecutor(procs + 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(abs, range(procs + 1)))  # processes started before the clock runs
        cpu_start = cpu_seconds(pid)
        started = time.monotonic()
        probing = pool.submit(prober, probe_bases, seconds)
        loads = [pool.submit(clients_process, url, bodies, n, seconds, nofile) for n in shares]
        while not all(f.done() for f in loads):
            time.sleep(0.5)
            rss_peak = max(rss_peak, status_kb(pid, "VmRSS"))
        server_cpu = cpu_seconds(pid) - cpu_start
        wall = time.monotonic() - started
        results = [f.result() for f in loads]
        probes, probe_failures, slow = probing.result()
    statuses: Counter[str] = sum((r["statuses"] for r in results), Counter())
    errors: Counter[str] = sum((r["errors"] for r in results), Counter())
    latencies = [x for r in results for x in r["latencies"]]
    return {
        "statuses": statuses,
        "errors": errors,
        "latencies": latencies,
        "probes": probes,
        "probe_failures": probe_failures,
        "slow_probes": slow,
        "rss_sampled_peak_kb": rss_peak,
        "wall": wall,
        "server_cpu": server_cpu,
        "loadgen_cpu": sum(r["cpu_seconds"] for r in results),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="checkout whose server runs")
    ap.add_argument("--model", choices=("rf", "lr"), default="rf")
    ap.add_argument("--clients", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--procs", type=int, default=2, help="load-generating processes")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a server setting (MF_KEY), e.g. --set max_queue_rows=512",
    )
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument(
        "--probe",
        choices=("health", "main", "both"),
        default="both",
        help="which port the prober uses: the health listener (MF_HEALTH_PORT, what "
        "the chart's probes use), the main port, or both",
    )
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.clients + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(need, soft), hard), hard))
    print(
        f"open files limit: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]} "
        f"(clients {args.clients})"
    )

    work = args.work or Path(tempfile.mkdtemp(prefix="mf-overload-"))
    uri, digest, rows = make_model(work, args.model)
    settings = dict(item.split("=", 1) for item in args.set)
    if args.probe != "main":
        settings.setdefault("health_port", str(free_port()))
    server = start_server(args.model, uri, digest, work / "server.log", args.root, **settings)
    try:
        rss_start = status_kb(server.pid, "VmRSS")
        load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
        reset_peak(server.pid)
        probe_bases = {}
        if args.probe != "main":
            probe_bases["health port"] = f"http://127.0.0.1:{settings['health_port']}"
        if args.probe != "health":
            probe_bases["main port"] = server.url
        out = run(
            server.url,
            args.model,
            rows,
            args.clients,
            args.procs,
            args.seconds,
            server.pid,
            probe_bases,
        )
        wall = out["wall"]
        hwm = status_kb(server.pid, "VmHWM")
    finally:
        server.stop()

    st, lat = out["statuses"], out["latencies"]
    total = sum(st.values())
    print(f"server code: {args.root}  model: {args.model}  settings: {settings or 'defaults'}")
    print(
        f"{args.clients} clients, {args.seconds:g} s (wall {wall:.1f} s), {total:,} answers, "
        f"{st['200'] / wall:,.0f} admitted req/s"
    )
    print(
        f"CPU cores used: server {out['server_cpu'] / wall:.2f}, load generator "
        f"({args.procs} processes) {out['loadgen_cpu'] / wall:.2f}; load average before: "
        f"{load_before}"
    )
    print("answers by status: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(st.items())))
    other = sum(out["errors"].values())
    print(f"errors other than 503/504: {other} (goal 0) {dict(out['errors']) or ''}")
    print(
        f"admitted (200) latency ms: p50 {percentile(lat, 50):.1f}  p99 "
        f"{percentile(lat, 99):.1f}  max {percentile(lat, 100):.1f}"
    )
    for path, values in out["probes"].items():
        print(
            f"probe {path}: {len(values)} answered, p50 {percentile(values, 50):.1f} ms  p99 "
            f"{percentile(values, 99):.1f} ms  max {percentile(values, 100):.1f} ms "
            "(goal p99 < 100)"
        )
    slow = ", ".join(
        f"{path.split()[0]} {path.rsplit('/', 1)[1]} at {at:.1f} s: {took * 1000:.0f} ms"
        for at, path, took in out["slow_probes"][:10]
    )
    print(f"probes over 100 ms: {len(out['slow_probes'])} {slow}")
    print(
        f"probe failures: {sum(out['probe_failures'].values())} {dict(out['probe_failures']) or ''}"
    )
    print(
        f"server RSS: {rss_start / 1024:.0f} MB at start, peak {hwm / 1024:.0f} MB "
        f"(VmHWM; sampled peak {out['rss_sampled_peak_kb'] / 1024:.0f} MB)"
    )


if __name__ == "__main__":
    main()
