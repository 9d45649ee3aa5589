// Seed 003's acceptance test (docs/design.md#seed-003) against stockguard's API, for k6:
// 500 virtual users for one minute against one SKU holding 100 units, each iteration a new
// order of 1 unit. Only 201 (a new hold) and 409 (out of stock) are acceptable, and exactly
// 100 holds may be granted.
//
//   STOCKGUARD_ADMIN_TOKEN=… k6 run -e BASE_URL=http://127.0.0.1:8000 examples/k6/drop.js
//
// The same test without k6, with the audit and a report: `stockguard loadtest --scenario drop`
// (docs/loadtest.md).

import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
const ADMIN_TOKEN = __ENV.STOCKGUARD_ADMIN_TOKEN || '';
const API_TOKEN = __ENV.STOCKGUARD_API_TOKEN || '';
const UNITS = Number(__ENV.UNITS || 100);
const VUS = Number(__ENV.VUS || 500);
const DURATION = __ENV.DURATION || '60s';

const granted = new Counter('granted');
const refused = new Counter('refused');

// 409 is an expected answer here: it must not count as a failed request.
http.setResponseCallback(http.expectedStatuses(201, 409));

export const options = {
  scenarios: {
    drop: { executor: 'constant-vus', vus: VUS, duration: DURATION },
  },
  thresholds: {
    http_req_duration: ['p(95)<500'],
    http_req_failed: ['rate==0'], // nothing but 201 and 409
    checks: ['rate==1'],
    granted: [`count==${UNITS}`], // exactly the stock, never one more
  },
};

function headers(token) {
  const found = { 'Content-Type': 'application/json' };
  if (token) {
    found.Authorization = `Bearer ${token}`;
  }
  return found;
}

export function setup() {
  const sku = `K6-DROP-${Date.now()}`;
  const answer = http.put(
    `${BASE_URL}/v1/stock/${sku}`,
    JSON.stringify({ on_hand: UNITS }),
    { headers: headers(ADMIN_TOKEN) },
  );
  if (answer.status !== 200) {
    throw new Error(`setting the stock answered ${answer.status}: ${answer.body}`);
  }
  return { sku, run: Date.now().toString(36) };
}

export default function (data) {
  const orderId = `${data.run}-${exec.vu.idInTest}-${exec.vu.iterationInScenario}`;
  const answer = http.post(
    `${BASE_URL}/v1/reservations`,
    JSON.stringify({ order_id: orderId, items: [{ sku: data.sku, quantity: 1 }] }),
    { headers: headers(API_TOKEN), tags: { name: 'reserve' } },
  );
  check(answer, { 'status is 201 or 409': (r) => r.status === 201 || r.status === 409 });
  if (answer.status === 201) {
    granted.add(1);
  } else if (answer.status === 409) {
    refused.add(1);
  }
}

export function teardown(data) {
  // The audit from the service's own API: every granted unit is held, none beyond stock.
  const answer = http.get(`${BASE_URL}/v1/stock/${data.sku}`, { headers: headers(ADMIN_TOKEN) });
  const stock = answer.json();
  check(stock, {
    'on_hand unchanged': (s) => s.on_hand === UNITS,
    'reserved is the stock': (s) => s.reserved === UNITS,
    'nothing left': (s) => s.available === 0,
  });
}
