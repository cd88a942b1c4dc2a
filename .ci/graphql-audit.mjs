// Runs graphql-http's server audits (GraphQL over HTTP) against GRAPHQL_URL.
// Started by .ci/graphql-audit, which installs the packages into
// CR_AUDIT_NODE_DIR; every request carries `Authorization: Bearer GRAPHQL_TOKEN`.
//
// Prints every result: "ok", "warn" (SHOULD), "error" (MUST) or "notice" (MAY),
// and for each failure the reason, the request the audit sent and what the
// server answered (status, headers, body). Exits 1 when a MUST or SHOULD audit
// fails, 2 when the audit itself could not run.
import { createRequire } from 'node:module';
import { join } from 'node:path';

const url = process.env.GRAPHQL_URL;
const token = process.env.GRAPHQL_TOKEN;
const toolsDir = process.env.CR_AUDIT_NODE_DIR;
if (!url || !token || !toolsDir) {
  console.error('GRAPHQL_URL, GRAPHQL_TOKEN and CR_AUDIT_NODE_DIR must be set (run .ci/graphql-audit)');
  process.exit(2);
}
const require = createRequire(join(toolsDir, 'package.json'));
const { auditServer } = require('graphql-http');
const version = (name) => require(`${name}/package.json`).version;

const MAX_BODY = 2000;

// What each response (and every clone of it) answered to, and its body text,
// read before the audit consumes the stream.
const exchanges = new WeakMap();

function track(res, info) {
  exchanges.set(res, info);
  const clone = res.clone.bind(res);
  res.clone = () => track(clone(), info);
  return res;
}

async function fetchFn(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  const method = init.method ?? 'GET';
  const res = await fetch(input, { ...init, headers });
  let body;
  try {
    body = await res.clone().text();
  } catch (err) {
    body = `<body could not be read: ${err}>`;
  }
  const shownHeaders = Object.fromEntries([...headers].filter(([k]) => k !== 'authorization'));
  return track(res, {
    request: { method, url: String(input), headers: shownHeaders, body: init.body ?? null },
    body,
  });
}

function truncate(text) {
  if (text == null) return text;
  const s = String(text);
  return s.length > MAX_BODY ? `${s.slice(0, MAX_BODY)}… (${s.length} chars)` : s;
}

async function describe(res) {
  const info = exchanges.get(res);
  let body = info?.body;
  if (body === undefined) {
    try {
      body = res.bodyUsed ? '<body already consumed>' : await res.text();
    } catch (err) {
      body = `<body could not be read: ${err}>`;
    }
  }
  return {
    request: info?.request,
    status: res.status,
    statusText: res.statusText,
    headers: Object.fromEntries(res.headers.entries()),
    body: truncate(body),
  };
}

const LABEL = { ok: 'ok    ', notice: 'notice', warn: 'WARN  ', error: 'ERROR ' };

let results;
try {
  results = await auditServer({ url, fetchFn });
} catch (err) {
  console.error(`graphql-http audit could not run against ${url}:`, err);
  process.exit(2);
}

console.log(`graphql-http ${version('graphql-http')} (graphql ${version('graphql')}) audit of ${url}: ${results.length} audits\n`);
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const r of results) {
  counts[r.status] = (counts[r.status] ?? 0) + 1;
  console.log(`${LABEL[r.status] ?? r.status} [${r.id}] ${r.name}`);
  if (r.status === 'ok') continue;
  console.log(`       reason: ${r.reason}`);
  if (r.response) {
    const d = await describe(r.response);
    if (d.request) {
      console.log(`       request: ${d.request.method} ${d.request.url}`);
      console.log(`         headers: ${JSON.stringify(d.request.headers)}`);
      if (d.request.body != null) console.log(`         body: ${truncate(d.request.body)}`);
    }
    console.log(`       response: ${d.status} ${d.statusText}`);
    console.log(`         headers: ${JSON.stringify(d.headers)}`);
    console.log(`         body: ${d.body}`);
  }
}

const failing = counts.error + counts.warn;
console.log(
  `\n${counts.ok} ok, ${counts.error} MUST failed, ${counts.warn} SHOULD failed, ${counts.notice} MAY failed (allowed)`,
);
if (failing > 0) {
  console.log(`graphql-audit: FAILED (${failing} MUST/SHOULD audits failed)`);
  process.exit(1);
}
console.log('graphql-audit: passed');
