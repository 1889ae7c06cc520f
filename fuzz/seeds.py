#!/usr/bin/env python3
"""Regenerates the query seed corpus (fuzz/corpus/query/) from real dig and kdig queries.

A tiny UDP listener on 127.0.0.1 records every datagram it receives, byte for byte, and
answers each with the query echoed back as a REFUSED response so the client returns at
once. Each command below is run against it and its datagram written to
fuzz/corpus/query/<tool>-<label>. Names are those of the fuzz target's snapshot
(fuzz/checks/cluster.rs), so seeds reach real records and the fast path.

    python3 fuzz/seeds.py        # needs dig (bind9-dnsutils) and kdig (knot-dnsutils)

Ids, cookies and 0x20 case differ between runs; the seeds are committed, so re-running is
only needed to add cases.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "query")

WEB0 = "web-0.nginx.default.svc.cluster.local"

# (label, arguments after the server and port)
DIG = [
    ("a", ["A", WEB0]),
    ("aaaa", ["AAAA", "web-1.nginx.default.svc.cluster.local"]),
    ("srv-service", ["SRV", "nginx.default.svc.cluster.local"]),
    ("srv-port", ["SRV", "_web._tcp.nginx.default.svc.cluster.local"]),
    ("srv-big", ["SRV", "_pg._tcp.db.prod.svc.cluster.local"]),
    ("srv-big-512", ["SRV", "db.prod.svc.cluster.local", "+bufsize=512"]),
    ("srv-udp-port", ["SRV", "_dns._udp.brokers.prod.svc.cluster.local"]),
    ("a-service", ["A", "db.prod.svc.cluster.local"]),
    ("ptr-v4", ["-x", "192.0.2.10"]),
    ("ptr-v6", ["-x", "2001:db8::a"]),
    ("txt", ["TXT", "web-2.nginx.default.svc.cluster.local"]),
    ("any", ["ANY", WEB0]),
    ("mx-nodata", ["MX", WEB0]),
    ("nxdomain", ["A", "nosuch.default.svc.cluster.local"]),
    ("namespace", ["A", "prod.svc.cluster.local"]),
    ("outside", ["A", "example.org"]),
    ("soa", ["SOA", "cluster.local"]),
    ("ns", ["NS", "cluster.local"]),
    ("dns-version", ["TXT", "dns-version.cluster.local"]),
    ("chaos-version", ["CH", "TXT", "version.bind"]),
    ("dnssec", ["A", WEB0, "+dnssec"]),
    ("nsid", ["A", WEB0, "+nsid"]),
    ("cookie", ["A", WEB0, "+cookie"]),
    ("subnet", ["A", WEB0, "+subnet=192.0.2.0/24"]),
    ("subnet-v6", ["AAAA", WEB0, "+subnet=2001:db8::/56"]),
    ("padding", ["A", WEB0, "+padding=128"]),
    ("expire", ["SOA", "cluster.local", "+expire"]),
    ("ednsopt", ["A", WEB0, "+ednsopt=65001:cafe"]),
    ("edns1", ["A", WEB0, "+edns=1", "+noednsneg"]),
    ("ednsflags", ["A", WEB0, "+ednsflags=0x4000"]),
    ("noedns", ["A", WEB0, "+noedns"]),
    ("norecurse", ["A", WEB0, "+norecurse"]),
    ("adflag-cdflag", ["A", WEB0, "+adflag", "+cdflag"]),
    ("bufsize-0", ["A", WEB0, "+bufsize=0"]),
    ("bufsize-65535", ["SRV", "db.prod.svc.cluster.local", "+bufsize=65535"]),
    ("0x20", ["A", "WeB-0.NgInX.DeFaUlT.sVc.ClUsTeR.LoCaL"]),
    ("0x20-srv", ["SRV", "_PG._TcP.Db.PrOd.SvC.cLuStEr.LoCaL"]),
    ("header-only", ["A", WEB0, "+header-only"]),
    ("opcode-status", ["A", WEB0, "+opcode=status"]),
    ("notify", ["A", WEB0, "+opcode=notify"]),
    ("type65", ["TYPE65", WEB0]),
    ("https", ["HTTPS", WEB0]),
    ("ixfr-udp", ["IXFR=1", "cluster.local", "+notcp"]),
    ("root", ["NS", "."]),
    ("trailing-dot-upper", ["A", "CLUSTER.LOCAL."]),
]

KDIG = [
    ("a", ["A", WEB0]),
    ("aaaa", ["AAAA", "web-1.nginx.default.svc.cluster.local"]),
    ("srv", ["SRV", "_web._tcp.nginx.default.svc.cluster.local"]),
    ("ptr", ["-x", "192.0.2.11"]),
    ("txt", ["TXT", "web-0.nginx.default.svc.cluster.local"]),
    ("any", ["ANY", "nginx.default.svc.cluster.local"]),
    ("dnssec", ["A", WEB0, "+dnssec"]),
    ("nsid", ["A", WEB0, "+nsid"]),
    ("cookie", ["A", WEB0, "+cookie"]),
    ("subnet", ["A", WEB0, "+subnet=198.51.100.0/24"]),
    ("padding", ["A", WEB0, "+padding=64"]),
    ("alignment", ["A", WEB0, "+alignment=128"]),
    ("ednsopt", ["A", WEB0, "+ednsopt=65002:0102"]),
    ("edns1", ["A", WEB0, "+edns=1"]),
    ("noedns", ["A", WEB0, "+noedns"]),
    ("bufsize-1232", ["SRV", "db.prod.svc.cluster.local", "+bufsize=1232"]),
    ("norecurse-cd", ["A", WEB0, "+norec", "+cdflag"]),
    ("0x20", ["AAAA", "wEb-1.NGINX.default.SVC.cluster.LOCAL"]),
    ("nxdomain", ["A", "web-9.nginx.default.svc.cluster.local"]),
    ("class-any", ["-c", "ANY", "A", WEB0]),
]


def listen():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def serve(sock, received, stop):
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(65535)
        except socket.timeout:
            continue
        received.append(data)
        if len(data) >= 4:
            reply = bytearray(data)
            reply[2] |= 0x80  # QR
            reply[3] = (reply[3] & 0xF0) | 5  # REFUSED
            sock.sendto(bytes(reply), peer)


def capture(sock, received, argv):
    """Runs one client; returns the first datagram it sent."""
    start = len(received)
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
    return received[start] if len(received) > start else None


def main():
    for tool in ("dig", "kdig"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install bind9-dnsutils knot-dnsutils")
    os.makedirs(OUT, exist_ok=True)
    sock = listen()
    port = sock.getsockname()[1]
    received, stop = [], threading.Event()
    thread = threading.Thread(target=serve, args=(sock, received, stop), daemon=True)
    thread.start()
    written = 0
    common = {
        "dig": ["+tries=1", "+timeout=1", "+notcp", "+ignore"],
        "kdig": ["+retry=0", "+timeout=1", "+notcp", "+ignore"],
    }
    try:
        for tool, cases in (("dig", DIG), ("kdig", KDIG)):
            for label, args in cases:
                argv = [tool, "@127.0.0.1", "-p", str(port)] + common[tool] + args
                data = capture(sock, received, argv)
                if data is None:
                    print(f"no datagram from: {' '.join(argv)}", file=sys.stderr)
                    continue
                with open(os.path.join(OUT, f"{tool}-{label}"), "wb") as f:
                    f.write(data)
                written += 1
    finally:
        stop.set()
        thread.join()
    print(f"wrote {written} seeds to {OUT}")


if __name__ == "__main__":
    main()
