// Shared helpers for provgraph k6 scripts: env, tenant/seed rotation, arrival rates, JSON summary.
//
// Environment:
//   BASE_URL      e.g. http://127.0.0.1:8080            (default http://127.0.0.1:8080)
//   RATE          total query rate, req/s                (default 100)
//   DURATION      e.g. 20s                               (default 20s)
//   SEEDS_FILE    {"tenants": [{"tenant": "t00", "key": "...", "seeds": [..]}, ...]} (required)
//   PRE_VUS       preAllocatedVUs per scenario           (default 20)
//   MAX_VUS       maxVUs per scenario                    (default 200)
//   SUMMARY_FILE  where handleSummary writes the JSON summary (optional)
//   P99_MS        optional p99 threshold (ms) for every scenario (default 60000: report only)
//   MAX_DROPPED   optional limit on dropped_iterations (default: none, reported only)
// Run k6 with GOMAXPROCS=4 on this machine (the Go scheduler otherwise adds tail stalls;
// see /work/shared/WORKLOADS.md P1).

export const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const RATE = parseFloat(__ENV.RATE || '100');
export const DURATION = __ENV.DURATION || '20s';
export const PRE_VUS = parseInt(__ENV.PRE_VUS || '20', 10);
export const MAX_VUS = parseInt(__ENV.MAX_VUS || '200', 10);
export const SUMMARY_FILE = __ENV.SUMMARY_FILE || '';
export const P99_MS = parseFloat(__ENV.P99_MS || '60000');
export const MAX_DROPPED = __ENV.MAX_DROPPED || '';

if (!(RATE > 0)) {
  throw new Error(`RATE must be > 0, got ${__ENV.RATE}`);
}

export const SEEDS_FILE = __ENV.SEEDS_FILE || '';

// Parses the SEEDS_FILE text. The caller reads it with open() in its init context (open()
// is not available in VU code, and relative paths resolve against the calling script).
export function parseTenants(text, path) {
  const doc = JSON.parse(text);
  const tenants = (doc && doc.tenants) || [];
  if (tenants.length === 0) {
    throw new Error(`SEEDS_FILE ${path} has no tenants`);
  }
  for (const t of tenants) {
    if (!t.tenant || !t.key || !Array.isArray(t.seeds) || t.seeds.length === 0) {
      throw new Error(`SEEDS_FILE ${path}: bad tenant entry ${JSON.stringify(t)}`);
    }
  }
  return tenants;
}

// Deterministic rotation: iteration k of a scenario uses tenant k mod T and that tenant's
// seed (k div T) mod S, so every tenant gets the same share and seeds are cycled in order.
export function pick(tenants, iteration) {
  const t = tenants[iteration % tenants.length];
  const s = t.seeds[Math.floor(iteration / tenants.length) % t.seeds.length];
  return { tenant: t.tenant, key: t.key, seed: s };
}

// constant-arrival-rate needs an integer rate: fractional req/s are expressed per minute.
export function arrival(ratePerSecond) {
  if (Number.isInteger(ratePerSecond)) {
    return { rate: Math.max(1, ratePerSecond), timeUnit: '1s' };
  }
  return { rate: Math.max(1, Math.round(ratePerSecond * 60)), timeUnit: '1m' };
}

// An open-loop scenario (constant arrival rate; k6 counts arrivals with no free VU as
// dropped_iterations instead of queueing them).
export function openLoop(exec, ratePerSecond, tags) {
  return Object.assign(
    {
      executor: 'constant-arrival-rate',
      exec: exec,
      duration: DURATION,
      preAllocatedVUs: PRE_VUS,
      maxVUs: MAX_VUS,
      gracefulStop: '10s',
      tags: tags || {},
    },
    arrival(ratePerSecond),
  );
}

// Thresholds: fail on any meaningful error rate; the per-scenario entries exist mainly so
// k6 computes those submetrics and they show up in handleSummary's data.
export function thresholdsFor(names) {
  const th = {
    http_req_failed: ['rate<0.001'],
    dropped_iterations: [MAX_DROPPED ? `count<=${parseInt(MAX_DROPPED, 10)}` : 'count>=0'],
  };
  for (const n of names) {
    th[`http_req_duration{scenario:${n}}`] = [`p(99)<${P99_MS}`];
    th[`http_req_failed{scenario:${n}}`] = ['rate<0.001'];
    th[`http_reqs{scenario:${n}}`] = ['count>=0'];
    th[`dropped_iterations{scenario:${n}}`] = ['count>=0'];
  }
  return th;
}

function val(data, metric, stat, dflt) {
  const m = data.metrics[metric];
  if (!m || !m.values || m.values[stat] === undefined || m.values[stat] === null) {
    return dflt;
  }
  return m.values[stat];
}

function thresholdsOk(data) {
  let ok = true;
  for (const name of Object.keys(data.metrics)) {
    const th = data.metrics[name].thresholds || {};
    for (const expr of Object.keys(th)) {
      if (!th[expr].ok) {
        ok = false;
      }
    }
  }
  return ok;
}

function fmt(x) {
  return x === null || x === undefined ? '-' : Number(x).toFixed(2);
}

// Builds {stdout, SUMMARY_FILE} for handleSummary: per-scenario p50/p95/p99/max (ms),
// request counts, failure rate, dropped iterations, plus p99 / p50 against the floor flow.
export function summarize(data, rates, floor) {
  const scenarios = {};
  for (const name of Object.keys(rates)) {
    const d = `http_req_duration{scenario:${name}}`;
    scenarios[name] = {
      target_rps: rates[name],
      requests: val(data, `http_reqs{scenario:${name}}`, 'count', 0),
      achieved_rps: val(data, `http_reqs{scenario:${name}}`, 'rate', 0),
      failed_rate: val(data, `http_req_failed{scenario:${name}}`, 'rate', 0),
      dropped_iterations: val(data, `dropped_iterations{scenario:${name}}`, 'count', 0),
      p50_ms: val(data, d, 'med', null),
      p95_ms: val(data, d, 'p(95)', null),
      p99_ms: val(data, d, 'p(99)', null),
      max_ms: val(data, d, 'max', null),
    };
  }
  const f = scenarios[floor];
  for (const name of Object.keys(scenarios)) {
    const s = scenarios[name];
    s.p99_vs_floor = f && f.p99_ms ? s.p99_ms / f.p99_ms : null;
    s.p50_minus_floor_ms = f && f.p50_ms !== null && s.p50_ms !== null ? s.p50_ms - f.p50_ms : null;
  }
  const out = {
    tool: 'k6',
    base_url: BASE_URL,
    rate: RATE,
    duration: DURATION,
    floor: floor,
    scenarios: scenarios,
    http_req_failed_rate: val(data, 'http_req_failed', 'rate', 0),
    dropped_iterations: val(data, 'dropped_iterations', 'count', 0),
    thresholds_ok: thresholdsOk(data),
  };
  const lines = [`provgraph k6: ${BASE_URL} RATE=${RATE} DURATION=${DURATION}`];
  lines.push(
    'flow        target/s  reqs   fail%   dropped  p50ms   p95ms   p99ms   maxms   p99/floor',
  );
  for (const name of Object.keys(scenarios)) {
    const s = scenarios[name];
    lines.push(
      [
        name.padEnd(10),
        String(s.target_rps).padStart(9),
        String(s.requests).padStart(6),
        (100 * s.failed_rate).toFixed(2).padStart(7),
        String(s.dropped_iterations).padStart(8),
        fmt(s.p50_ms).padStart(7),
        fmt(s.p95_ms).padStart(7),
        fmt(s.p99_ms).padStart(7),
        fmt(s.max_ms).padStart(7),
        fmt(s.p99_vs_floor).padStart(10),
      ].join(' '),
    );
  }
  lines.push(`thresholds ${out.thresholds_ok ? 'ok' : 'FAILED'}`);
  const result = { stdout: lines.join('\n') + '\n' };
  if (SUMMARY_FILE) {
    result[SUMMARY_FILE] = JSON.stringify(out, null, 2);
  }
  return result;
}
