// Open-loop k6 load for provgraph graph queries (Q1 top-n, Q2 neighborhood) with a /healthz floor.
//
//   GOMAXPROCS=4 BASE_URL=http://127.0.0.1:8080 RATE=300 DURATION=20s SEEDS_FILE=seeds.json \
//     SUMMARY_FILE=out/k6-graph.json k6 run --no-usage-report python/provgraph/bench/k6/graph.js
//
// Rates (all constant-arrival-rate, i.e. open loop; see lib.js for the other variables):
//   q1      = RATE * 0.8  POST /v1/tenants/{t}/graph/query  {"query":"topn",...}
//   q2      = RATE * 0.2  POST /v1/tenants/{t}/graph/query  {"query":"neighborhood",...}
//   healthz = RATE * 0.8  GET /healthz — the framework + machine floor, at the same rate as q1
//                         (so the server sees RATE * 1.8 req/s in total).

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import {
  BASE_URL, RATE, SEEDS_FILE, openLoop, parseTenants, pick, summarize, thresholdsFor,
} from './lib.js';

if (!SEEDS_FILE) {
  throw new Error('SEEDS_FILE is required (JSON: {"tenants": [{"tenant","key","seeds"}]})');
}
const TENANTS = parseTenants(open(SEEDS_FILE), SEEDS_FILE);

const RATES = {
  q1: RATE * 0.8,
  q2: RATE * 0.2,
  healthz: RATE * 0.8,
};

export const options = {
  scenarios: {
    q1: openLoop('q1', RATES.q1, { flow: 'q1' }),
    q2: openLoop('q2', RATES.q2, { flow: 'q2' }),
    healthz: openLoop('healthz', RATES.healthz, { flow: 'healthz' }),
  },
  thresholds: thresholdsFor(Object.keys(RATES)),
  summaryTrendStats: ['med', 'p(95)', 'p(99)', 'max'],
  discardResponseBodies: true,
  noConnectionReuse: false,
};

const QUERY_TAG = { name: '/v1/tenants/{t}/graph/query' };

function query(body, tenant, key) {
  return http.post(`${BASE_URL}/v1/tenants/${tenant}/graph/query`, JSON.stringify(body), {
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
    tags: QUERY_TAG,
  });
}

export function q1() {
  const p = pick(TENANTS, exec.scenario.iterationInTest);
  const body = { query: 'topn', seed: p.seed, hops: 2, n: 10, edge_types: [0, 1, 2, 3, 4] };
  const res = query(body, p.tenant, p.key);
  check(res, { 'q1 status 200': (r) => r.status === 200 });
}

export function q2() {
  const p = pick(TENANTS, exec.scenario.iterationInTest);
  const body = { query: 'neighborhood', seed: p.seed, depth: 3, limit: 50000 };
  const res = query(body, p.tenant, p.key);
  check(res, { 'q2 status 200': (r) => r.status === 200 });
}

export function healthz() {
  const res = http.get(`${BASE_URL}/healthz`, { tags: { name: '/healthz' } });
  check(res, { 'healthz status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  return summarize(data, RATES, 'healthz');
}
