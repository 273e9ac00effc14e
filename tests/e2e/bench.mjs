// Time to first render of the console's customers table and customer 360
// page, measured in headless Chromium: from the start of the navigation to
// the mark the page sets once the data is drawn (crm:customers-rendered,
// crm:view-rendered). Run by `cargo xtask bench-console --store DIR`, which
// serves the store; prints one JSON line per page.
import { chromium } from '@playwright/test';

const base = process.env.CRM_URL;
const runs = Number(process.argv[2] || 10);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const errors = [];
page.on('pageerror', (e) => errors.push(e.message));
await page.goto(base + '/signin');
await page.fill('input[name=user]', process.env.CRM_VIEWER_USER);
await page.fill('input[name=password]', process.env.CRM_VIEWER_PASSWORD);
await page.click('button[type=submit]');
await page.waitForSelector('#customers tbody tr', { timeout: 120_000 });

const total = await page.evaluate(async () => (await (await fetch('/api/v1/customers?limit=1')).json()).total);
// Customers from all over the id range: the first 500 by name.
const ids = await page.evaluate(async (n) => {
  const page = await (await fetch('/api/v1/customers?sort=name&limit=500')).json();
  return Array.from({ length: n }, (_, i) => page.items[(i * 37) % page.items.length].customer_id);
}, runs);

async function measure(url, mark) {
  await page.goto(base + url);
  await page.waitForFunction((m) => performance.getEntriesByName(m).length > 0, mark, { timeout: 120_000 });
  return page.evaluate((m) => performance.getEntriesByName(m)[0].startTime, mark);
}

function summary(name, times) {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { page: name, customers: total, runs: times.length, median_ms: +at(0.5).toFixed(1), p90_ms: +at(0.9).toFixed(1), max_ms: +sorted.at(-1).toFixed(1) };
}

// One warm-up of each, then the runs.
await measure('/customers', 'crm:customers-rendered');
await measure('/customers/' + ids[0], 'crm:view-rendered');
const table = [];
const view = [];
for (let i = 0; i < runs; i++) {
  table.push(await measure('/customers', 'crm:customers-rendered'));
  view.push(await measure('/customers/' + encodeURIComponent(ids[i]), 'crm:view-rendered'));
}
const search = [];
for (let i = 0; i < runs; i++) search.push(await measure('/customers?q=' + ['tab', 'kiosk', 'jos', 'mar', 'store'][i % 5], 'crm:customers-rendered'));
console.log(JSON.stringify(summary('customers table', table)));
console.log(JSON.stringify(summary('customers table, searched by name', search)));
console.log(JSON.stringify(summary('customer 360', view)));
await browser.close();
if (errors.length) { console.error('page errors:', errors); process.exit(1); }
