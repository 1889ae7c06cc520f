#!/usr/bin/env python3
"""Two (or more) petdns builds or settings in turn, on the same machine, same cluster, same load.

    python3 bench/ab.py [--rates 20000,100000,150000,250000] [--reps 3] [--secs 6] \\
        before=/tmp/petdns-before after=target/release/petdns off=target/release/petdns:--answer-cache-mib,0

Each NAME=BINARY[:ARG,ARG...] is started on CPU 0 on the large cluster of bench/run.py
(bench/out/large, made by a run of bench/run.py), dnsperf offers each rate on CPU 1 for --secs
seconds over the mixed questions (with EDNS; with --no-edns without it, where
answers over 512 bytes are sent truncated), and the server's user and system time come from /proc (all
threads). Runs alternate between the servers rep by rep, so a slow spell of a shared machine
falls on all of them. Prints each run, the answer-cache counters, and medians.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LARGE = os.path.join(HERE, "out", "large")


def ticks(pid):
    user = system = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        f = open(f"/proc/{pid}/task/{t}/stat").read().rsplit(")", 1)[1].split()
        user += int(f[11])
        system += int(f[12])
    return user, system


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("servers", nargs="+", help="NAME=BINARY[:ARG,ARG...]")
    ap.add_argument("--rates", default="20000,100000,150000,250000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--secs", type=int, default=6)
    ap.add_argument("--port", type=int, default=5397)
    ap.add_argument("--no-edns", action="store_true", help="ask without EDNS (512-byte answers)")
    a = ap.parse_args()
    qfile = os.path.join(LARGE, "queries-mix.txt")
    if not os.path.exists(qfile):
        sys.exit(f"{qfile} is missing: run python3 bench/run.py once (it generates the cluster)")
    servers = []
    for s in a.servers:
        name, _, rest = s.partition("=")
        binary, _, args = rest.partition(":")
        if not name or not os.access(binary, os.X_OK):
            sys.exit(f"{s}: expected NAME=BINARY[:ARG,...] with an executable BINARY")
        servers.append((name, binary, [x for x in args.split(",") if x]))
    rates = [int(r) for r in a.rates.split(",")]
    tck = os.sysconf("SC_CLK_TCK")
    admin = a.port + 1000
    results = {}
    for rep in range(a.reps):
        for name, binary, args in servers:
            with tempfile.TemporaryDirectory() as state:
                p = subprocess.Popen(["taskset", "-c", "0", binary, "serve", "--manifests",
                                      os.path.join(LARGE, "cluster.yaml"), "--listen", f"127.0.0.1:{a.port}",
                                      "--admin", f"127.0.0.1:{admin}", "--state-dir", state, *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    for _ in range(150):
                        r = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(a.port), "@127.0.0.1",
                                            "svc-0-0.svc-0.ns-0.svc.cluster.local", "A"], capture_output=True, text=True)
                        if r.stdout.strip():
                            break
                        time.sleep(0.2)
                    else:
                        sys.exit(f"{name} never answered")
                    for rate in rates:
                        u0, s0 = ticks(p.pid)
                        out = subprocess.run(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(a.port),
                                              "-d", qfile, "-l", str(a.secs), "-Q", str(rate), "-c", "32", "-q", "500",
                                              *([] if a.no_edns else ["-e"])], capture_output=True, text=True).stdout
                        u1, s1 = ticks(p.pid)
                        n = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))
                        user, system = (u1 - u0) / tck / n * 1e6, (s1 - s0) / tck / n * 1e6
                        results.setdefault((name, rate), []).append((user, system, n / a.secs))
                        print(f"rep {rep} {name:10} {rate:7} qps offered: user {user:5.2f} + system {system:5.2f} = "
                              f"{user + system:5.2f} us/query, {n / a.secs:8.0f} qps answered", flush=True)
                    metrics = subprocess.run(["curl", "-s", f"127.0.0.1:{admin}/metrics"], capture_output=True,
                                             text=True).stdout
                    print("    " + " ".join(l for l in metrics.splitlines()
                                            if l.startswith("petdns_dns_answer_cache")), flush=True)
                finally:
                    p.kill()
                    p.wait()
    print("medians:")
    for rate in rates:
        for name, _, _ in servers:
            v = results[(name, rate)]
            print(f"  {rate:7} qps offered, {name:10}: user {statistics.median(x[0] for x in v):.2f} + system "
                  f"{statistics.median(x[1] for x in v):.2f}, total {statistics.median(x[0] + x[1] for x in v):.2f} "
                  f"us/query, {statistics.median(x[2] for x in v):.0f} qps answered")


if __name__ == "__main__":
    main()
