#!/usr/bin/env node
// A clustered data store in the style of the kubia-pet-peers app of "Kubernetes in Action"
// (the StatefulSet chapter), without dependencies:
//
//   POST /      stores the request body as a line of DATA_FILE; answers "Data stored on pod <POD_NAME>"
//   GET /data   this pod's data, or "no data posted yet"
//   GET /       "You've hit <POD_NAME>", then the data of every peer: an SRV lookup of
//               SERVICE_FQDN gives the peers (this pod included), each target's A record gives
//               its address, and GET http://<address>:<SRV port>/data gives its data.
//
// Environment:
//   POD_NAME       this pod's name (default: the host name)
//   POD_IP         address to listen on (default 0.0.0.0)
//   PORT           port to listen on (default 8080)
//   SERVICE_FQDN   the governing Service (default peers.default.svc.cluster.local)
//   DNS_SERVER     "ip" or "ip:port" of the DNS server for both lookups (default: the system's)
//   DATA_FILE      where POSTed data goes (default ./data/<POD_NAME>.txt)
//   PEER_TIMEOUT_MS  per-peer deadline for the A lookup and the HTTP fetch (default 2000)
//
// Run it by hand on one machine against petdns: see README.md beside this file.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { Resolver } = require('node:dns/promises');

const POD_NAME = process.env.POD_NAME || os.hostname();
const POD_IP = process.env.POD_IP || '0.0.0.0';
const PORT = Number(process.env.PORT || 8080);
const SERVICE_FQDN = process.env.SERVICE_FQDN || 'peers.default.svc.cluster.local';
const DNS_SERVER = process.env.DNS_SERVER || '';
const DATA_FILE = process.env.DATA_FILE || path.join('data', `${POD_NAME}.txt`);
const PEER_TIMEOUT_MS = Number(process.env.PEER_TIMEOUT_MS || 2000);
const MAX_BODY = 64 * 1024;

if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) {
  console.error(`${POD_NAME}: PORT must be a port number, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(2);
}

// One resolver for the SRV and the A lookups, so both go to DNS_SERVER (the system resolver
// knows nothing of cluster.local on a laptop). c-ares retries UDP `tries` times, `timeout` ms each.
const resolver = new Resolver({ timeout: 1000, tries: 2 });
if (DNS_SERVER) {
  try {
    resolver.setServers([DNS_SERVER]);
  } catch (err) {
    console.error(`${POD_NAME}: bad DNS_SERVER ${JSON.stringify(DNS_SERVER)}: ${err.message}`);
    process.exit(2);
  }
}
const dnsName = DNS_SERVER || resolver.getServers().join(',');

function readData() {
  try {
    const lines = fs.readFileSync(DATA_FILE, 'utf8').split('\n').filter((l) => l !== '');
    return lines.length ? lines.join('; ') : null;
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

function storeData(body) {
  fs.mkdirSync(path.dirname(path.resolve(DATA_FILE)), { recursive: true });
  // One line per POST: newlines inside the body would split it into several entries.
  fs.appendFileSync(DATA_FILE, body.replace(/\r?\n/g, ' ').trim() + '\n');
}

function reply(res, status, text) {
  const body = Buffer.from(text.endsWith('\n') ? text : text + '\n');
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': body.length });
  res.end(body);
}

// Runs `promise` with a deadline; rejects with `what timed out after N ms`.
function withTimeout(promise, ms, what) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// GET http://host:port/data; resolves to the body, rejects with a readable reason.
function fetchData(host, port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/data', agent: false, timeout: PEER_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { body += chunk; });
      res.on('end', () => {
        if (res.statusCode === 200) resolve(body.trim());
        else reject(new Error(`HTTP ${res.statusCode} from ${host}:${port}: ${body.trim()}`));
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${host}:${port} within ${PEER_TIMEOUT_MS} ms`)));
    req.on('error', (err) => {
      reject(err.code && !err.message.includes(`${host}:${port}`)
        ? new Error(`${err.code} from ${host}:${port}`)
        : err);
    });
  });
}

// One peer's line: "- <target>: <data>" or "- <target>: error: <reason>".
async function peerLine(srv) {
  const target = srv.name;
  try {
    const addresses = await withTimeout(resolver.resolve4(target), PEER_TIMEOUT_MS, `A lookup of ${target}`);
    if (addresses.length === 0) throw new Error(`no A record for ${target}`);
    const data = await fetchData(addresses[0], srv.port);
    return { target, ok: true, line: `- ${target}: ${data}` };
  } catch (err) {
    return { target, ok: false, line: `- ${target}: error: ${err.message}` };
  }
}

async function clusterData(res) {
  let records;
  try {
    records = await withTimeout(resolver.resolveSrv(SERVICE_FQDN), PEER_TIMEOUT_MS * 2,
      `SRV lookup of ${SERVICE_FQDN}`);
  } catch (err) {
    reply(res, 502, `You've hit ${POD_NAME}\nCould not look up DNS SRV records of ${SERVICE_FQDN} via ${dnsName}: ${err.code || err.message}`);
    return;
  }
  const lines = [`You've hit ${POD_NAME}`, 'Data stored in the cluster:'];
  if (records.length === 0) {
    lines.push('No peers discovered.');
  } else {
    const peers = await Promise.all(records.map(peerLine));
    peers.sort((a, b) => a.target.localeCompare(b.target, 'en', { numeric: true }));
    for (const p of peers) lines.push(p.line);
    const failed = peers.filter((p) => !p.ok).length;
    if (failed) console.error(`${POD_NAME}: ${failed} of ${peers.length} peers did not answer`);
  }
  reply(res, 200, lines.join('\n'));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (req.method === 'POST' && url.pathname === '/') {
    let body = '';
    let size = 0;
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      size += Buffer.byteLength(chunk);
      if (size > MAX_BODY) {
        reply(res, 413, `body larger than ${MAX_BODY} bytes`);
        req.destroy();
        return;
      }
      body += chunk;
    });
    req.on('end', () => {
      if (res.writableEnded) return;
      try {
        storeData(body);
      } catch (err) {
        reply(res, 500, `could not store data on pod ${POD_NAME}: ${err.message}`);
        return;
      }
      console.log(`${POD_NAME}: stored ${JSON.stringify(body.trim())}`);
      reply(res, 200, `Data stored on pod ${POD_NAME}`);
    });
  } else if (req.method === 'GET' && url.pathname === '/data') {
    let data;
    try {
      data = readData();
    } catch (err) {
      reply(res, 500, `could not read ${DATA_FILE}: ${err.message}`);
      return;
    }
    reply(res, 200, data === null ? 'no data posted yet' : data);
  } else if (req.method === 'GET' && url.pathname === '/') {
    clusterData(res).catch((err) => reply(res, 500, `internal error: ${err.stack || err}`));
  } else {
    reply(res, req.method === 'GET' || req.method === 'POST' ? 404 : 405, `no ${req.method} ${url.pathname} here`);
  }
});

server.on('error', (err) => {
  console.error(`${POD_NAME}: cannot listen on ${POD_IP}:${PORT}: ${err.message}`);
  process.exit(1);
});

server.listen(PORT, POD_IP, () => {
  console.log(`${POD_NAME}: listening on ${POD_IP}:${PORT}, peers from SRV ${SERVICE_FQDN} via ${dnsName}, data in ${DATA_FILE}`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
