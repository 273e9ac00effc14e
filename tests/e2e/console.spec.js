// The console end to end, in headless Chromium, against `crm serve` on a
// demo store (2,000 generated customers, the tobacco-retail plugin and its
// segments) that `cargo xtask e2e` prepares. Each page's screenshot is saved
// in target/e2e/screenshots/.

import { test, expect } from '@playwright/test';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const OUT = process.env.CRM_E2E_OUT || '../../target/e2e';
const SHOTS = path.join(OUT, 'screenshots');
fs.mkdirSync(SHOTS, { recursive: true });

const users = {
  admin: [process.env.CRM_ADMIN_USER, process.env.CRM_ADMIN_PASSWORD],
  agent: [process.env.CRM_AGENT_USER, process.env.CRM_AGENT_PASSWORD],
  viewer: [process.env.CRM_VIEWER_USER, process.env.CRM_VIEWER_PASSWORD],
  analyst: [process.env.CRM_ANALYST_USER, process.env.CRM_ANALYST_PASSWORD],
};

/** Console errors and uncaught exceptions of the page; `allowed` are expected answers (a 422 shown at a field). */
function watch(page) {
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push('uncaught: ' + e.message));
  return {
    expectClean(allowed = []) {
      const unexpected = errors.filter((e) => !allowed.some((re) => re.test(e)));
      expect(unexpected, 'console errors').toEqual([]);
    },
  };
}

async function signIn(page, role = 'admin') {
  const [user, password] = users[role];
  await page.goto('/signin');
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
  await expect(page.locator('#customers tbody tr').first()).toBeVisible();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, name + '.png'), fullPage: true });
}

/** Calls the API with the page's session (cookie and CSRF token). */
async function apiCall(page, method, url, body) {
  return page.evaluate(async ([method, url, body]) => {
    const session = await (await fetch('/api/v1/session')).json();
    const r = await fetch('/api/v1' + url, {
      method,
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': session.csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    return { status: r.status, etag: r.headers.get('etag'), body: text ? JSON.parse(text) : null };
  }, [method, url, body]);
}

test('signs in with a user name and password, and refuses a wrong one', async ({ page }) => {
  const w = watch(page);
  const response = await page.goto('/customers');
  expect(response.headers()['content-security-policy']).toContain("script-src 'self'");
  await expect(page).toHaveURL(/\/signin\?next=%2Fcustomers/);
  await page.fill('input[name=user]', users.admin[0]);
  await page.fill('input[name=password]', 'not the password');
  await page.click('button[type=submit]');
  await expect(page.getByRole('alert')).toContainText('the user name or the password is wrong');
  await shot(page, '01-sign-in');
  await page.fill('input[name=password]', users.admin[1]);
  await page.click('button[type=submit]');
  await expect(page).toHaveURL(/\/customers$/);
  await expect(page.locator('#who')).toContainText(users.admin[0] + ' · admin');
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'crm_session');
  expect(session.httpOnly).toBe(true);
  expect(session.sameSite).toBe('Strict');
  // A change with the cookie but without the CSRF token is refused.
  const forged = await page.evaluate(async () => (await fetch('/api/v1/views/x', {
    method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: '{"params":{}}',
  })).status);
  expect(forged).toBe(403);
  await page.click('text=Sign out');
  await expect(page).toHaveURL(/\/signin/);
  w.expectClean([/status of 401/, /status of 403/]);
});

test('customers: search as you type, filter, sort, page, save a view, export', async ({ page }) => {
  const w = watch(page);
  await signIn(page);
  await expect(page.locator('.pager')).toContainText('1–50 of 2,000');
  await shot(page, '02-customers');

  // Search by part of a name, accents and case ignored.
  const list = await apiCall(page, 'GET', '/customers?q=Tabac&limit=5');
  expect(list.body.total).toBeGreaterThan(0);
  await page.fill('input[type=search]', 'tabac');
  await expect(page.locator('.pager')).toContainText(`of ${list.body.total.toLocaleString('en')}`);
  for (const name of await page.locator('#customers td.name').allTextContents()) {
    expect(name.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase()).toContain('tabac');
  }
  await expect(page).toHaveURL(/q=tabac/);

  // A filter and a descending sort.
  await page.selectOption('select[name=tier]', 'gold');
  await page.click('th >> text=Name');
  await page.click('th >> text=Name');
  await expect(page).toHaveURL(/sort=-name/);
  await expect(page.locator('#customers tbody tr').first()).toBeVisible();
  const tiers = await page.locator('#customers tbody tr td:nth-child(5)').allTextContents();
  expect(new Set(tiers)).toEqual(new Set(['gold']));
  const expected = await apiCall(page, 'GET', '/customers?q=tabac&tier=gold&sort=-name&limit=50');
  await expect(page.locator('#customers td.name')).toHaveText(expected.body.items.map((c) => c.name));

  // Save the view, clear, and bring it back.
  await page.fill('input[aria-label="Name of this view"]', 'gold tobacconists');
  await page.click('text=Save view');
  await expect(page.locator('.notice')).toContainText('saved');
  await page.click('button:text("Clear")');
  await expect(page.locator('.pager')).toContainText('of 2,000');
  await page.selectOption('select[aria-label="Saved views"]', { label: 'gold tobacconists' });
  await expect(page.locator('#customers td.name')).toHaveText(expected.body.items.map((c) => c.name));

  // The export link carries the view's filters.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('text=Export CSV')]);
  const csv = fs.readFileSync(await download.path(), 'utf8').trim().split('\n');
  expect(csv[0]).toMatch(/^customer_id,name,/);
  expect(csv.length - 1).toBe(expected.body.total);

  // A segment's members as a list.
  await page.click('button:text("Clear")');
  const members = await apiCall(page, 'GET', '/segments/steady-high-margin/members?limit=1');
  await page.selectOption('select[name=segment]', 'steady-high-margin');
  await expect(page.locator('.pager')).toContainText(`of ${members.body.total.toLocaleString('en')}`);
  await expect(page.locator('#customers tbody tr').first()).toHaveAttribute('data-id', members.body.items[0].customer_id);

  // Pages over the whole list.
  await page.click('button:text("Clear")');
  await page.click('text=Next →');
  await expect(page.locator('.pager')).toContainText('51–100 of 2,000');
  await page.click('text=← Previous');
  await expect(page.locator('.pager')).toContainText('1–50 of 2,000');
  w.expectClean();
});

test('customer 360: profile from the plugin schema, scores, timeline; an invalid field shows its message there', async ({ page }) => {
  const w = watch(page);
  await signIn(page, 'agent');
  await page.fill('input[type=search]', 'C0000001');
  await expect(page.locator('#customers tbody tr')).toHaveCount(1);
  await page.click('#customers tbody tr');
  await expect(page).toHaveURL(/\/customers\/C0000001$/);
  const view = (await apiCall(page, 'GET', '/customers/C0000001/view')).body;
  await expect(page.locator('#customer-name')).toHaveText(view.customer.name);
  // The industry fields are laid out from the plugin's JSON Schema: titles and groups.
  await expect(page.locator('#profile h3', { hasText: 'Licence' })).toBeVisible();
  await expect(page.locator('#profile dt', { hasText: 'Licence number' })).toBeVisible();
  await expect(page.locator('[data-field="attributes.license_no"]')).toHaveText(view.customer.attributes.license_no);
  await expect(page.locator('#scores')).toContainText('reorder-risk');
  await expect(page.locator('#timeline li').first()).toBeVisible();
  expect(await page.locator('#timeline li').count()).toBe(Math.min(50, view.timeline.length));
  await shot(page, '03-customer-360');

  await page.click('#edit-customer');
  await page.fill('input[name="attributes.license_no"]', '12ab');
  await page.click('#customer-form button[type=submit]');
  const error = page.locator('[data-error-for="attributes.license_no"]');
  await expect(error).toContainText('does not match');
  await expect(error).toContainText('12 digits');
  await expect(page.locator('input[name="attributes.license_no"]')).toHaveClass(/invalid/);
  await shot(page, '04-customer-invalid-field');

  // A valid change is saved, and shown.
  await page.fill('input[name="attributes.license_no"]', view.customer.attributes.license_no);
  await page.fill('input[name="attributes.monthly_quota"]', '777');
  await page.click('#customer-form button[type=submit]');
  await expect(page.locator('[data-field="attributes.monthly_quota"]')).toHaveText('777');
  const after = (await apiCall(page, 'GET', '/customers/C0000001')).body;
  expect(after.attributes.monthly_quota).toBe(777);
  w.expectClean([/status of 422/]);
});

test('logs an opinion that appears first in the timeline', async ({ page }) => {
  const w = watch(page);
  await signIn(page, 'agent');
  await page.goto('/customers/C0000002');
  await expect(page.locator('#interaction-form')).toBeVisible();
  const before = (await apiCall(page, 'GET', '/interactions?customer_id=C0000002&limit=500')).body.items.length;
  await page.selectOption('#interaction-form select[name=kind]', 'opinion');
  await page.selectOption('#interaction-form select[name=department]', 'service');
  await page.selectOption('#interaction-form select[name=topic]', 'quality');
  await page.click('#interaction-form button[type=submit]');
  const first = page.locator('#timeline li').first();
  await expect(first).toContainText('opinion');
  await expect(first).toContainText('service · quality');
  await expect(first).toContainText('open');
  const items = (await apiCall(page, 'GET', '/interactions?customer_id=C0000002&limit=500')).body.items;
  expect(items.length).toBe(before + 1);
  const logged = items.find((i) => i.kind === 'opinion' && i.topic === 'quality' && i.rep === users.agent[0]);
  expect(logged).toBeTruthy();
  w.expectClean();
});

test('a viewer sees the 360 without the forms that change it', async ({ page }) => {
  const w = watch(page);
  await signIn(page, 'viewer');
  await page.goto('/customers/C0000003');
  await expect(page.locator('#profile')).toBeVisible();
  await expect(page.locator('#edit-customer')).toHaveCount(0);
  await expect(page.locator('#interaction-form')).toHaveCount(0);
  await expect(page.locator('nav >> text=Analyses')).toBeVisible();
  await expect(page.locator('nav >> text=Import')).toHaveCount(0);
  w.expectClean();
});

test('runs the analyses on a segment: charts with their numbers and CSV', async ({ page }) => {
  const w = watch(page);
  await signIn(page, 'analyst');
  await page.click('nav >> text=Analyses');
  await expect(page.locator('[data-analysis=rfm][data-ready=true] svg')).toBeVisible();
  const segment = 'steady-high-margin';
  await page.selectOption('select[name=segment]', segment);
  await page.click('#run-analyses');
  await expect(page).toHaveURL(new RegExp('segment=' + segment));
  for (const name of ['rfm', 'pareto', 'performance', 'prospecting', 'product_affinity', 'promotion', 'opinions', 'satisfaction']) {
    await expect(page.locator(`[data-analysis=${name}][data-ready=true]`)).toBeVisible();
  }
  // The RFM grid's numbers are the segment's, as the API gives them.
  const rfm = (await apiCall(page, 'GET', '/analyses/rfm?segment=' + segment)).body;
  const members = (await apiCall(page, 'GET', `/segments/${segment}/members?limit=1`)).body.total;
  const shown = await page.locator('[data-analysis=rfm] .numbers tbody tr td:nth-child(2)').allTextContents();
  expect(shown.map((t) => Number(t.replace(/,/g, '')))).toEqual(rfm.map((r) => r.customers));
  expect(rfm.reduce((a, r) => a + r.customers, 0)).toBeLessThanOrEqual(members);
  await expect(page.locator('[data-analysis=rfm] svg rect')).toHaveCount(rfm.length);
  await expect(page.locator('[data-analysis=pareto] svg polyline')).toHaveCount(2);
  await shot(page, '05-analyses-on-segment');

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('[data-analysis=rfm] a:text("CSV")')]);
  const csv = fs.readFileSync(await download.path(), 'utf8').trim().split('\n');
  expect(csv[0]).toBe('segment,customers,share,avg_monetary');
  expect(csv.length - 1).toBe(rfm.length);
  w.expectClean();
});

test('segment editor: a typo is shown at its line and column as you type; a fixed script counts and saves with history', async ({ page }) => {
  const w = watch(page);
  await signIn(page, 'analyst');
  await page.goto('/segments');
  await expect(page.locator('#segment-list li').first()).toBeVisible();
  await page.fill('input[name=name]', 'gold-big-spenders');
  await page.fill('textarea[name=script]', 'c.revenue > 1000.0 && c.tierr == "gold"');
  const error = page.locator('#segment-error');
  await expect(error).toBeVisible();
  await expect(error).toHaveAttribute('data-line', '1');
  await expect(error).toHaveAttribute('data-column', '25');
  await expect(error).toContainText('tier');
  await expect(page.locator('.gutter .error-line')).toHaveText('1');
  await shot(page, '06-segment-typo');

  await page.fill('textarea[name=script]', 'c.revenue > 1000.0 && c.tier == "gold"');
  const count = page.locator('#segment-count');
  await expect(count).toContainText('customers match');
  const tested = (await apiCall(page, 'POST', '/segments/test', { script: 'c.revenue > 1000.0 && c.tier == "gold"' })).body;
  await expect(count).toContainText(`${tested.members.toLocaleString('en')} of 2,000`);
  await page.click('button:text("Save")');
  await expect(page.locator('#segment-message')).toContainText('revision 1');
  await expect(page.locator('#segment-history')).toContainText('revision 1');
  await expect(page.locator('#segment-list')).toContainText('gold-big-spenders');

  // Explain for a member of the sample.
  const member = tested.sample[0].customer_id;
  await page.fill('input[aria-label="Customer id to explain"]', member);
  await page.click('button:text("Explain")');
  await expect(page.locator('#explain')).toContainText('true');
  await shot(page, '07-segment-saved');
  w.expectClean([/status of 422/]);
});

test('import: a file with a bad row is refused whole, then imported with the bad row set aside and its report downloaded', async ({ page }, info) => {
  const w = watch(page);
  await signIn(page);
  const dir = info.outputPath('upload');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'customers.csv');
  fs.writeFileSync(file, [
    'customer_id,name,gender,birth_date,region,city,channel,joined_at,tier,attributes',
    'E2E0001,Quiosco Prueba,F,1980-01-02,North,Pinecrest,store,2024-01-01,bronze,"{""license_no"":""250000000001"",""store_type"":""kiosk"",""business_district"":""school"",""monthly_quota"":40}"',
    'E2E0002,Bad Row,X,1980-01-02,North,Pinecrest,store,2024-01-01,bronze,',
  ].join('\n') + '\n');
  await page.click('nav >> text=Import');
  await page.setInputFiles('input[type=file]', file);
  await page.click('button:text("Import")');
  await expect(page.locator('#import-problems')).toContainText('customers.csv:3');
  await shot(page, '08-import-refused');

  await page.setInputFiles('input[type=file]', file);
  await page.check('input[name=skip_invalid]');
  await page.click('button:text("Import")');
  const report = page.locator('#import-report');
  await expect(report).toContainText('customers.csv');
  const cells = await report.locator('tbody tr td').allTextContents();
  expect(cells.slice(1, 6)).toEqual(['2', '1', '0', '0', '1']);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('.rejected-rows')]);
  const rejected = fs.readFileSync(await download.path(), 'utf8');
  expect(rejected).toContain('E2E0002');
  expect(rejected).toMatch(/gender/);
  await shot(page, '09-import-report');
  const added = await apiCall(page, 'GET', '/customers/E2E0001');
  expect(added.status).toBe(200);
  w.expectClean();
});

test('plugins: status, fields and analyses; disable and enable again', async ({ page }) => {
  const w = watch(page);
  await signIn(page);
  await page.click('nav >> text=Plugins');
  const row = page.locator('tr[data-plugin="tobacco-retail"]');
  await expect(row).toContainText('enabled');
  await expect(row).toContainText('0.1.0');
  await row.locator('button:text("Fields")').click();
  await expect(page.locator('#plugin-fields')).toContainText('Licence number');
  await expect(page.locator('#plugin-fields')).toContainText('sales-by-band');
  await shot(page, '10-plugins');
  await row.locator('button:text("Disable")').click();
  await expect(row).toContainText('disabled');
  await row.locator('button:text("Enable")').click();
  await expect(row).toContainText('enabled');
  w.expectClean();
});

test('plugins: install a package by upload, refuse it twice, remove it', async ({ page }, info) => {
  const w = watch(page);
  await signIn(page);
  const pkg = info.outputPath('minimal.tar.gz');
  execFileSync('tar', ['czf', pkg, '-C', path.resolve('../../target/plugins'), 'minimal']);
  await page.click('nav >> text=Plugins');
  await page.setInputFiles('input[aria-label="Plugin package"]', pkg);
  await page.click('button:text("Install")');
  await expect(page.locator('.notice')).toContainText('Minimal 0.1.0 is installed');
  const row = page.locator('tr[data-plugin="minimal"]');
  await expect(row).toContainText('enabled');
  await page.setInputFiles('input[aria-label="Plugin package"]', pkg);
  await page.click('button:text("Install")');
  await expect(page.getByRole('alert')).toContainText('minimal');
  page.once('dialog', (d) => d.accept());
  await row.locator('button:text("Remove")').click();
  await expect(page.locator('.notice')).toContainText('minimal is removed');
  await expect(row).toHaveCount(0);
  w.expectClean([/status of 409/]);
});

test('users: an admin adds a user who then signs in, and removes them', async ({ page }) => {
  const w = watch(page);
  await signIn(page);
  await page.click('nav >> text=Users');
  await expect(page.locator('tr[data-user="e2e-agent"]')).toContainText('agent');
  await page.fill('#user-form input[name=name]', 'new-colleague');
  await page.selectOption('#user-form select[name=role]', 'viewer');
  await page.fill('#user-form input[name=password]', 'short');
  await page.click('#user-form button[type=submit]');
  await expect(page.locator('[data-error-for=password]')).toContainText('at least 10 characters');
  await page.fill('#user-form input[name=password]', 'a good long password');
  await page.click('#user-form button[type=submit]');
  await expect(page.locator('tr[data-user="new-colleague"]')).toContainText('viewer');
  await shot(page, '13-users');
  await page.click('text=Sign out');
  await page.fill('input[name=user]', 'new-colleague');
  await page.fill('input[name=password]', 'a good long password');
  await page.click('button[type=submit]');
  await expect(page.locator('#who')).toContainText('new-colleague · viewer');
  await expect(page.locator('nav >> text=Users')).toHaveCount(0);
  await page.click('text=Sign out');
  await signIn(page);
  await page.goto('/users');
  await page.locator('tr[data-user="new-colleague"] button:text("Remove")').click();
  await expect(page.locator('tr[data-user="new-colleague"]')).toHaveCount(0);
  w.expectClean([/status of 422/]);
});

test('stored XSS: names and free text holding markup render as text', async ({ page }) => {
  const w = watch(page);
  await signIn(page);
  const payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
  const created = await apiCall(page, 'POST', '/customers', {
    customer_id: 'XSS0001', name: 'Kiosk ' + payload, gender: 'U', region: 'North', city: '<b>bold</b>',
    channel: 'store', joined_at: '2024-01-01', tier: 'bronze',
    attributes: { license_no: '250000000002', store_type: 'kiosk', business_district: 'school', monthly_quota: 10, note: payload },
  });
  expect(created.status).toBe(201);
  const logged = await apiCall(page, 'POST', '/interactions', {
    interaction_id: 'XSS-I1', customer_id: 'XSS0001', ts: '2025-01-01T10:00:00Z', kind: 'contact', department: 'sales',
    region: 'North', rep: payload,
  });
  expect(logged.status).toBe(201);
  await page.fill('input[type=search]', 'XSS0001');
  await expect(page.locator('#customers tbody tr')).toHaveCount(1);
  await expect(page.locator('#customers td.name')).toHaveText('Kiosk ' + payload);
  await page.click('#customers tbody tr');
  await expect(page.locator('#customer-name')).toHaveText('Kiosk ' + payload);
  await expect(page.locator('#timeline li').first()).toContainText('by ' + payload);
  await expect(page.locator('[data-field="attributes.note"]')).toHaveText(payload);
  await expect(page.locator('[data-field="city"]')).toHaveText('<b>bold</b>');
  expect(await page.evaluate(() => window.__xss)).toBeUndefined();
  expect(await page.locator('#view img, #view script, #view b').count()).toBe(0);
  await shot(page, '11-stored-xss-as-text');
  w.expectClean();
});

test('every page loads without console errors', async ({ page }) => {
  const w = watch(page);
  await signIn(page);
  for (const [url, ready] of [
    ['/customers', '#customers tbody tr'],
    ['/customers/C0000010', '#timeline'],
    ['/analyses', '[data-analysis=satisfaction][data-ready=true]'],
    ['/segments', '#segment-list li'],
    ['/plugins', '#plugins'],
    ['/imports', 'text=Imports since the server started'],
  ]) {
    await page.goto(url);
    await expect(page.locator(ready).first()).toBeVisible();
  }
  await page.setViewportSize({ width: 820, height: 1180 });
  await page.goto('/customers/C0000010');
  await expect(page.locator('#timeline')).toBeVisible();
  await shot(page, '12-customer-360-tablet');
  w.expectClean();
});
