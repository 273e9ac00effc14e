// The CRM console: one page that draws each section from the HTTP API.
//
// Text from the data is only ever put in the page as text (textContent,
// attribute values), never as HTML, so names and notes holding markup or
// scripts show as they were typed. The session cookie is HttpOnly; changes
// carry the session's CSRF token in the X-CSRF-Token header.

'use strict';

// ---------------------------------------------------------------- helpers

/** Makes an element: h('a', {href: '/x', class: 'c', onclick: f}, 'text', child). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG = 'http://www.w3.org/2000/svg';

/** Makes an SVG element. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** Replaces the children of `el` (arrays are flattened). */
function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const view = document.getElementById('view');
const fmt = new Intl.NumberFormat('en');
const fmt2 = new Intl.NumberFormat('en', { maximumFractionDigits: 2 });
const money = new Intl.NumberFormat('en', { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const pct = (x) => (x * 100).toFixed(1) + '%';

function num(v) {
  if (typeof v !== 'number') return v ?? '';
  return Number.isInteger(v) ? fmt.format(v) : fmt2.format(v);
}

function debounce(fn, ms) {
  let t;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

function params(obj) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
  const text = p.toString();
  return text ? '?' + text : '';
}

const enc = encodeURIComponent;

// -------------------------------------------------------------------- API

let session = null;

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || 'HTTP ' + status);
    this.status = status;
    this.problem = problem;
  }
}

/** Calls the API; answers {data, etag}. Bodies other than FormData/Blob go as JSON. */
async function call(method, path, body, headers = {}) {
  const h2 = { Accept: 'application/json', ...headers };
  let payload = body;
  if (method !== 'GET' && session) h2['X-CSRF-Token'] = session.csrf;
  if (body !== undefined && !(body instanceof FormData) && !(body instanceof Blob)) {
    h2['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const r = await fetch('/api/v1' + path, { method, headers: h2, body: payload, credentials: 'same-origin' });
  if (!r.ok) {
    let problem;
    try { problem = await r.json(); } catch { problem = { title: r.statusText, detail: 'HTTP ' + r.status }; }
    if (r.status === 401 && path !== '/session' && session) {
      // The session ended while working (a restart, a revoked token).
      session = null;
      sessionReady = null;
      go('/signin' + params({ next: location.pathname + location.search }));
    }
    throw new ApiError(r.status, problem);
  }
  const type = r.headers.get('content-type') || '';
  const data = r.status === 204 ? null : type.includes('json') ? await r.json() : await r.text();
  return { data, etag: r.headers.get('etag') };
}

const api = async (path) => (await call('GET', path)).data;

function errorBox(err) {
  const p = err && err.problem;
  if (p) {
    const lines = [p.title + (p.detail ? ': ' + p.detail : '')];
    for (const e of p.errors || []) lines.push(e.field + ': ' + e.message);
    return h('div', { class: 'alert', role: 'alert' }, lines.map((l, i) => [i ? h('br') : null, l]));
  }
  return h('div', { class: 'alert', role: 'alert' }, String(err && err.message || err));
}

// ------------------------------------------------------------------ roles

const can = {
  editCustomers: () => ['admin', 'agent'].includes(session?.role),
  analyse: () => ['admin', 'analyst', 'viewer'].includes(session?.role),
  editSegments: () => ['admin', 'analyst'].includes(session?.role),
  managePlugins: () => ['admin', 'integrator'].includes(session?.role),
  importData: () => ['admin', 'integrator'].includes(session?.role),
};

// ----------------------------------------------------------------- router

const routes = [
  [/^\/signin$/, signInPage],
  [/^\/(customers)?$/, customersPage],
  [/^\/customers\/(.+)$/, customerPage],
  [/^\/analyses$/, analysesPage],
  [/^\/segments$/, segmentsPage],
  [/^\/plugins$/, pluginsPage],
  [/^\/imports$/, importsPage],
  [/^\/users$/, usersPage],
];

const sections = [
  ['/customers', 'Customers'],
  ['/analyses', 'Analyses'],
  ['/segments', 'Segments'],
  ['/plugins', 'Plugins'],
  ['/imports', 'Import'],
];

function go(path, replace = false) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  render();
}

document.addEventListener('click', (e) => {
  const a = e.target.closest('a');
  if (!a || a.target || a.hasAttribute('download') || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api/')) return;
  e.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener('popstate', () => render());

let renderId = 0;

/** Who is signed in: asked once, while the page asks for its data. */
let sessionReady = null;

async function render() {
  const id = ++renderId;
  const path = location.pathname;
  const current = () => id === renderId;
  if (path !== '/signin') {
    if (!session) {
      sessionReady = sessionReady || call('GET', '/session').then((r) => r.data, () => null);
      sessionReady.then((s2) => {
        session = s2;
        if (!current()) return;
        if (s2) drawHeader(path);
        else go('/signin' + params({ next: path + location.search }), true);
      });
    } else {
      sessionReady = Promise.resolve(session);
      drawHeader(path);
    }
  } else {
    sessionReady = null;
    drawHeader(path);
  }
  for (const [re, page] of routes) {
    const m = path.match(re);
    if (m) {
      fill(view);
      try {
        await page(m[1] && decodeURIComponent(m[1]), current);
      } catch (err) {
        // Not signed in: the sign-in page is on its way.
        if (current() && !(err instanceof ApiError && err.status === 401)) fill(view, errorBox(err));
      }
      return;
    }
  }
  fill(view, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '/customers' }, 'Customers')));
}

function drawHeader(path) {
  const top = document.getElementById('top');
  top.hidden = !session || path === '/signin';
  if (top.hidden) return;
  // Only the sections the role can use.
  const allowed = { '/analyses': can.analyse, '/imports': can.importData };
  const visible = sections.filter(([href]) => !allowed[href] || allowed[href]());
  if (session.role === 'admin') visible.push(['/users', 'Users']);
  fill(document.getElementById('nav'), visible.map(([href, label]) =>
    h('a', { href, class: path.startsWith(href) || (href === '/customers' && path === '/') ? 'active' : null }, label)));
  fill(document.getElementById('who'), 
    h('span', {}, session.name + ' · ' + session.role),
    h('button', { type: 'button', onclick: signOut }, 'Sign out'));
}

async function signOut() {
  try { await call('DELETE', '/session'); } catch { /* signed out either way */ }
  session = null;
  sessionReady = null;
  pluginSchemas = null;
  go('/signin');
}

// ---------------------------------------------------------------- sign in

async function signInPage() {
  document.title = 'Sign in · CRM';
  const next = new URLSearchParams(location.search).get('next') || '/customers';
  const message = h('div', { 'aria-live': 'polite' });
  let mode = 'user';
  const user = h('input', { name: 'user', autocomplete: 'username', required: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const token = h('input', { name: 'token', type: 'password', autocomplete: 'off', placeholder: 'crm_…' });
  const userFields = h('div', { class: 'stack' },
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'User name'), user),
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'Password'), password));
  const tokenFields = h('div', { class: 'stack', hidden: true },
    h('label', { class: 'field' }, h('span', { class: 'label' }, 'API token'), token));
  const tabUser = h('button', { type: 'button', 'aria-selected': 'true', onclick: () => setMode('user') }, 'User and password');
  const tabToken = h('button', { type: 'button', 'aria-selected': 'false', onclick: () => setMode('token') }, 'Token');
  function setMode(m) {
    mode = m;
    tabUser.setAttribute('aria-selected', m === 'user');
    tabToken.setAttribute('aria-selected', m === 'token');
    userFields.hidden = m !== 'user';
    tokenFields.hidden = m !== 'token';
    user.required = password.required = m === 'user';
  }
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      fill(message);
      const body = mode === 'user' ? { user: user.value, password: password.value } : { token: token.value.trim() };
      try {
        session = (await call('POST', '/session', body)).data;
        go(next.startsWith('/') && !next.startsWith('//') ? next : '/customers', true);
      } catch (err) {
        fill(message, errorBox(err));
      }
    },
  }, h('div', { class: 'tabs', role: 'tablist' }, tabUser, tabToken), userFields, tokenFields, message,
  h('button', { class: 'primary', type: 'submit' }, 'Sign in'));
  fill(view, h('div', { class: 'signin panel' }, h('h1', {}, 'Sign in'), form));
  user.focus();
}

// -------------------------------------------------------------- customers

let facets = null;

const FILTERS = ['q', 'segment', 'region', 'city', 'tier', 'channel', 'gender', 'joined_from', 'joined_to', 'sort'];

async function customersPage(_, current) {
  document.title = 'Customers · CRM';
  const url = new URLSearchParams(location.search);
  const query = {};
  for (const k of FILTERS) if (url.get(k)) query[k] = url.get(k);
  const cursors = [];
  let after = null;

  const search = h('input', { type: 'search', name: 'q', placeholder: 'Search by id or name', value: query.q || '', 'aria-label': 'Search customers' });
  const selects = {};
  const filterBar = h('div', { class: 'toolbar' }, search);
  const dates = {
    joined_from: h('input', { type: 'date', name: 'joined_from', value: query.joined_from || '', 'aria-label': 'Joined from' }),
    joined_to: h('input', { type: 'date', name: 'joined_to', value: query.joined_to || '', 'aria-label': 'Joined to' }),
  };
  const viewsSelect = h('select', { 'aria-label': 'Saved views' });
  const viewName = h('input', { placeholder: 'Name of this view', 'aria-label': 'Name of this view', size: 16 });
  const exportLink = h('a', { class: 'button', download: 'customers.csv' }, 'Export CSV');
  const status = h('span', { class: 'muted', 'aria-live': 'polite' });
  const table = h('div', { class: 'table-wrap' });
  const prev = h('button', { type: 'button', disabled: true, onclick: () => { after = cursors.pop() ?? null; load(); } }, '← Previous');
  const next = h('button', { type: 'button', disabled: true }, 'Next →');
  const message = h('div');

  fill(view, 
    h('div', { class: 'spread' }, h('h1', {}, 'Customers'), h('div', { class: 'row' }, viewsSelect, viewName,
      h('button', { type: 'button', onclick: saveView }, 'Save view'),
      h('button', { type: 'button', class: 'danger', onclick: deleteView }, 'Delete view'), exportLink)),
    h('div', { class: 'panel' }, filterBar, message, table, h('div', { class: 'pager' }, status, prev, next)));

  function changed() {
    after = null;
    cursors.length = 0;
    const text = params(query);
    history.replaceState(null, '', '/customers' + text);
    load();
  }

  let seq = 0;
  async function load() {
    const mine = ++seq;
    exportLink.href = '/api/v1/customers.csv' + params(query);
    let page;
    try {
      page = await api('/customers' + params({ ...query, after, limit: 50 }));
    } catch (err) {
      if (mine === seq) { fill(message, errorBox(err)); fill(table); }
      return;
    }
    if (mine !== seq || !current()) return;
    fill(message);
    drawTable(page.items);
    const first = cursors.length * 50;
    status.textContent = page.total
      ? `${fmt.format(first + 1)}–${fmt.format(first + page.items.length)} of ${fmt.format(page.total)}`
      : 'No customer matches';
    prev.disabled = cursors.length === 0;
    next.disabled = !page.next;
    next.onclick = () => { cursors.push(after); after = page.next; load(); };
    performance.mark('crm:customers-rendered');
  }

  function sortButton(key, label) {
    const sort = query.sort || 'customer_id';
    const active = sort.replace(/^-/, '') === key;
    return h('button', {
      type: 'button', class: 'sort', 'aria-sort': active ? (sort.startsWith('-') ? 'descending' : 'ascending') : null,
      onclick: () => { query.sort = active && !sort.startsWith('-') ? '-' + key : key; if (query.sort === 'customer_id') delete query.sort; changed(); },
    }, label);
  }

  function drawTable(items) {
    const rows = items.map((c) => h('tr', { class: 'link', tabindex: 0, dataset: { id: c.customer_id },
      onclick: () => go('/customers/' + enc(c.customer_id)),
      onkeydown: (e) => { if (e.key === 'Enter') go('/customers/' + enc(c.customer_id)); },
    },
    h('td', {}, h('a', { href: '/customers/' + enc(c.customer_id) }, c.customer_id)),
    h('td', { class: 'name' }, c.name), h('td', {}, c.region), h('td', {}, c.city), h('td', {}, c.tier),
    h('td', {}, c.channel), h('td', {}, c.gender), h('td', {}, c.joined_at)));
    fill(table, h('table', { id: 'customers' },
      h('thead', {}, h('tr', {}, h('th', {}, sortButton('customer_id', 'Id')), h('th', {}, sortButton('name', 'Name')),
        h('th', {}, 'Region'), h('th', {}, 'City'), h('th', {}, 'Tier'), h('th', {}, 'Channel'), h('th', {}, 'Gender'),
        h('th', {}, sortButton('joined_at', 'Joined')))),
      h('tbody', {}, rows)));
  }

  search.addEventListener('input', debounce(() => { query.q = search.value.trim(); if (!query.q) delete query.q; changed(); }, 200));
  for (const [k, input] of Object.entries(dates)) {
    input.addEventListener('change', () => { if (input.value) query[k] = input.value; else delete query[k]; changed(); });
  }

  async function fillViews(selected) {
    let views = [];
    try { views = await api('/views'); } catch { /* views are optional */ }
    fill(viewsSelect, h('option', { value: '' }, 'Saved views…'),
      views.map((v) => h('option', { value: JSON.stringify(v.params), selected: v.name === selected }, v.name)));
  }
  viewsSelect.addEventListener('change', () => {
    if (!viewsSelect.value) return;
    for (const k of FILTERS) delete query[k];
    Object.assign(query, JSON.parse(viewsSelect.value));
    viewName.value = viewsSelect.selectedOptions[0].textContent;
    syncInputs();
    changed();
  });
  async function saveView() {
    const name = viewName.value.trim();
    if (!name) { fill(message, h('div', { class: 'alert' }, 'Give the view a name first.')); viewName.focus(); return; }
    try {
      await call('PUT', '/views/' + enc(name), { params: query });
      fill(message, h('div', { class: 'notice' }, `View “${name}” saved.`));
      fillViews(name);
    } catch (err) { fill(message, errorBox(err)); }
  }
  async function deleteView() {
    const option = viewsSelect.selectedOptions[0];
    if (!viewsSelect.value || !option) return;
    try {
      await call('DELETE', '/views/' + enc(option.textContent));
      fill(message, h('div', { class: 'notice' }, `View “${option.textContent}” deleted.`));
      fillViews();
    } catch (err) { fill(message, errorBox(err)); }
  }
  function syncInputs() {
    search.value = query.q || '';
    for (const [k, sel] of Object.entries(selects)) sel.value = query[k] || '';
    for (const [k, input] of Object.entries(dates)) input.value = query[k] || '';
  }

  const loaded = load();
  fillViews();
  const [facetValues, segments] = await Promise.all([
    facets || api('/facets/customers').catch(() => ({})),
    api('/segments').catch(() => []),
  ]);
  facets = facetValues;
  facets.segment = segments.map((sg) => sg.name);
  for (const [k, label] of [['segment', 'Segment'], ['region', 'Region'], ['city', 'City'], ['tier', 'Tier'], ['channel', 'Channel'], ['gender', 'Gender']]) {
    const values = facets[k] || [];
    const sel = h('select', { name: k, 'aria-label': label, onchange: () => { if (sel.value) query[k] = sel.value; else delete query[k]; changed(); } },
      h('option', { value: '' }, 'Any ' + label.toLowerCase()), values.map((v) => h('option', { value: v, selected: query[k] === v }, v)));
    selects[k] = sel;
    filterBar.append(sel);
  }
  filterBar.append(h('span', { class: 'muted' }, 'joined'), dates.joined_from, h('span', { class: 'muted' }, 'to'), dates.joined_to,
    h('button', { type: 'button', onclick: () => { for (const k of FILTERS) delete query[k]; syncInputs(); viewsSelect.value = ''; changed(); } }, 'Clear'));
  await loaded;
  search.focus();
}

// ----------------------------------------------------------- customer 360

let pluginSchemas = null;

/** Each enabled plugin's field schema: [{plugin, name, schema}]. */
async function fieldSchemas() {
  if (!pluginSchemas) pluginSchemas = await api('/plugin-fields').catch(() => []);
  return pluginSchemas;
}

/** The plugins' fields in groups: [[group, [[key, property]]]]. */
function groupedFields(schemas) {
  const groups = new Map();
  for (const { name, schema } of schemas) {
    for (const [key, prop] of Object.entries(schema.properties || {})) {
      const group = prop['x-crm-group'] || (prop.readOnly ? name + ': computed' : name);
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push([key, prop, (schema.required || []).includes(key)]);
    }
  }
  return [...groups.entries()];
}

const CORE_FIELDS = [
  ['customer_id', 'Id'], ['name', 'Name'], ['gender', 'Gender'], ['birth_date', 'Birth date'], ['region', 'Region'],
  ['city', 'City'], ['channel', 'Acquired through'], ['joined_at', 'Joined'], ['tier', 'Tier'],
];

const METRICS = [
  ['revenue', 'Revenue', 'money'], ['cost', 'Cost', 'money'], ['margin', 'Margin', 'money'], ['lines', 'Order lines'],
  ['baskets', 'Baskets'], ['first_purchase', 'First purchase'], ['last_purchase', 'Last purchase'],
  ['recency_days', 'Days since last purchase'], ['avg_interbasket_days', 'Days between baskets'],
  ['rfm_segment', 'RFM segment'], ['r', 'Recency score'], ['f', 'Frequency score'], ['m', 'Monetary score'],
  ['churn_risk', 'Churn risk'], ['avg_rating', 'Mean survey rating'], ['surveys', 'Surveys'],
  ['open_opinions', 'Open opinions'], ['as_of', 'As of'],
];

function fieldLabel(key, prop) { return (prop && prop.title) || key.replace(/_/g, ' '); }

async function customerPage(id, current) {
  document.title = id + ' · CRM';
  const [{ data: v, etag }, schemas] = await Promise.all([call('GET', '/customers/' + enc(id) + '/view?timeline=50'), fieldSchemas(), sessionReady]);
  if (!current()) return;
  const c = v.customer;
  document.title = c.name + ' · CRM';
  const groups = groupedFields(schemas);
  const message = h('div', { 'aria-live': 'polite' });
  const profile = h('section', { class: 'panel', id: 'profile' });

  function drawProfile() {
    fill(profile, 
      h('div', { class: 'spread' }, h('h2', {}, 'Profile'),
        can.editCustomers() ? h('button', { type: 'button', id: 'edit-customer', onclick: drawEdit }, 'Edit') : null),
      h('dl', { class: 'kv' }, CORE_FIELDS.map(([k, label]) => [h('dt', {}, label), h('dd', { dataset: { field: k } }, c[k] ?? '—')])),
      groups.map(([group, fields]) => [h('h3', {}, group), h('dl', { class: 'kv' }, fields.map(([k, prop]) => {
        const value = c.attributes?.[k];
        return [h('dt', { title: prop.description || null }, fieldLabel(k, prop)),
          h('dd', { dataset: { field: 'attributes.' + k } }, value === undefined || value === null ? '—' : typeof value === 'number' ? num(value) : String(value))];
      }))]),
      otherAttributes());
  }

  function otherAttributes() {
    const known = new Set(groups.flatMap(([, f]) => f.map(([k]) => k)));
    const rest = Object.entries(c.attributes || {}).filter(([k]) => !known.has(k));
    if (!rest.length) return null;
    return [h('h3', {}, 'Other fields'), h('dl', { class: 'kv' }, rest.map(([k, value]) =>
      [h('dt', {}, k), h('dd', { dataset: { field: 'attributes.' + k } }, typeof value === 'object' ? JSON.stringify(value) : String(value))]))];
  }

  function input(name, prop, value, required) {
    const attrs = { name, id: 'f-' + name.replace('.', '-'), required: required || null };
    if (prop.enum) {
      return h('select', attrs, required ? null : h('option', { value: '' }, '—'),
        prop.enum.map((o) => h('option', { value: o, selected: String(value) === String(o) }, o)));
    }
    if (prop.type === 'integer' || prop.type === 'number') {
      return h('input', { ...attrs, type: 'number', step: prop.type === 'integer' ? 1 : 'any', value: value ?? '', inputmode: 'decimal' });
    }
    if (prop.format === 'date') return h('input', { ...attrs, type: 'date', value: value ?? '' });
    return h('input', { ...attrs, type: 'text', value: value ?? '' });
  }

  function drawEdit() {
    const core = {
      name: { type: 'string' }, gender: { enum: ['M', 'F', 'U'] }, birth_date: { format: 'date' }, region: { type: 'string' },
      city: { type: 'string' }, channel: { enum: ['store', 'online', 'phone', 'referral', 'field'] }, joined_at: { format: 'date' }, tier: { type: 'string' },
    };
    const form = h('form', { novalidate: true, id: 'customer-form' },
      h('div', { class: 'form-grid' }, Object.entries(core).map(([k, prop]) =>
        field(k, CORE_FIELDS.find(([f]) => f === k)[1], input(k, prop, c[k], k !== 'birth_date')))),
      groups.map(([group, fields]) => {
        const editable = fields.filter(([, prop]) => !prop.readOnly);
        if (!editable.length) return null;
        return [h('h3', {}, group), h('div', { class: 'form-grid' }, editable.map(([k, prop, required]) =>
          field('attributes.' + k, fieldLabel(k, prop), input('attributes.' + k, prop, c.attributes?.[k], required), prop.description)))];
      }),
      h('div', { class: 'row' }, h('button', { class: 'primary', type: 'submit' }, 'Save'),
        h('button', { type: 'button', onclick: () => { fill(message); drawProfile(); } }, 'Cancel')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
      for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
      const next = { ...c, attributes: { ...(c.attributes || {}) } };
      delete next.revision;
      for (const el of form.elements) {
        if (!el.name) continue;
        const [top, key] = el.name.split('.');
        const prop = key ? groups.flatMap(([, f]) => f).find(([k]) => k === key)?.[1] || {} : core[top];
        let value = el.value;
        if (value === '') value = null;
        else if (prop.type === 'integer' || prop.type === 'number') value = Number(value);
        if (key) { if (value === null) delete next.attributes[key]; else next.attributes[key] = value; }
        else if (value === null) delete next[top];
        else next[top] = value;
      }
      try {
        await call('PUT', '/customers/' + enc(c.customer_id), next, { 'If-Match': etag });
        fill(message, h('div', { class: 'notice' }, 'Saved.'));
        await customerPage(id, current);
      } catch (err) {
        showFieldErrors(form, err, message);
      }
    });
    fill(profile, h('h2', {}, 'Edit profile'), form);
    form.querySelector('input, select')?.focus();
  }

  const metrics = v.metrics || {};
  const metricsPanel = h('section', { class: 'panel', id: 'metrics' }, h('h2', {}, 'Metrics'),
    v.metrics ? h('dl', { class: 'kv' }, METRICS.filter(([k]) => metrics[k] !== undefined && metrics[k] !== null).map(([k, label, kind]) =>
      [h('dt', {}, label), h('dd', {}, kind === 'money' ? money.format(Number(metrics[k])) : typeof metrics[k] === 'number' ? num(metrics[k]) : String(metrics[k]))]),
    Object.entries(metrics).filter(([k, val]) => !METRICS.some(([m]) => m === k) && val !== null && typeof val !== 'object').map(([k, val]) =>
      [h('dt', {}, k.replace(/_/g, ' ')), h('dd', {}, typeof val === 'number' ? num(val) : String(val))]))
      : h('p', { class: 'muted' }, 'No metrics yet: the customer is new since the data was last read.'));

  const scoresPanel = h('section', { class: 'panel', id: 'scores' }, h('h2', {}, 'Scores'),
    v.scores.length ? v.scores.map((sc) => h('div', { class: 'stack' },
      h('div', { class: 'score' }, h('span', { class: 'value' }, fmt2.format(sc.value || 0)),
        h('span', { class: 'chip ' + (sc.band === 'high' ? 'bad' : sc.band === 'low' ? 'good' : 'warn') }, sc.band),
        h('span', { class: 'muted' }, sc.plugin + ' · ' + sc.model)),
      h('ul', { class: 'reasons' }, sc.reasons.map((r) => h('li', {}, h('strong', {}, r.feature), ` (${r.weight >= 0 ? '+' : ''}${fmt2.format(r.weight)}): `, r.detail)))))
      : h('p', { class: 'muted' }, 'No plugin scores this customer.'));

  const segmentsPanel = h('section', { class: 'panel', id: 'segments' }, h('h2', {}, 'Segments'),
    v.segments === null || v.segments === undefined ? h('p', { class: 'muted' }, 'Memberships are being worked out…')
      : v.segments.length ? v.segments.map((name) => h('span', { class: 'chip' }, name)) : h('p', { class: 'muted' }, 'In no saved segment.'));

  const timeline = h('section', { class: 'panel', id: 'timeline' });
  function drawTimeline(items, more) {
    fill(timeline, h('h2', {}, 'Timeline'),
      items.length ? h('ol', { class: 'timeline' }, items.map(timelineItem)) : h('p', { class: 'muted' }, 'Nothing yet.'),
      more ? h('div', { class: 'row' }, h('span', { class: 'muted' }, `${fmt.format(more)} older entries not shown.`),
        items.length < 1000 ? h('button', {
          type: 'button', onclick: async () => {
            const all = await api('/customers/' + enc(id) + '/view?timeline=1000');
            drawTimeline(all.timeline, all.timeline_more);
          },
        }, 'Show older') : null) : null);
  }
  drawTimeline(v.timeline, v.timeline_more);

  fill(view, 
    h('div', { class: 'spread' }, h('div', {}, h('h1', { id: 'customer-name' }, c.name),
      h('div', { class: 'row muted' }, c.customer_id, h('span', { class: 'chip' }, c.tier), c.region + ' · ' + c.city)),
    h('a', { href: '/customers' }, '← Customers')),
    message,
    h('div', { class: 'grid' }, profile, h('div', { class: 'stack' }, metricsPanel, segmentsPanel), scoresPanel),
    h('div', { class: 'grid wide' }, timeline, can.editCustomers() ? interactionForm(c, () => customerPage(id, current)) : null));
  drawProfile();
  performance.mark('crm:view-rendered');
}

/** A labelled form control with a place for the message a server gives about it. */
function field(name, label, control, help) {
  return h('label', { class: 'field' }, h('span', { class: 'label' }, label), control,
    help ? h('small', {}, help) : null, h('span', { class: 'field-error', dataset: { errorFor: name } }));
}

/** Marks the fields a problem names; the rest of it goes to `message`. */
function showFieldErrors(form, err, message) {
  const p = err.problem || {};
  const issues = p.errors && p.errors.length ? p.errors : p.field ? [{ field: p.field, message: p.detail }] : [];
  let placed = 0;
  for (const issue of issues) {
    const el = form.querySelector(`[name="${CSS.escape(issue.field)}"]`);
    const slot = form.querySelector(`[data-error-for="${CSS.escape(issue.field)}"]`);
    if (el && slot) {
      el.classList.add('invalid');
      el.setAttribute('aria-invalid', 'true');
      slot.textContent = issue.message;
      if (!placed) el.focus();
      placed++;
    }
  }
  fill(message, placed === issues.length && placed ? h('div', { class: 'alert' }, p.title + ': see the fields marked below.') : errorBox(err));
}

const KINDS = {
  transaction: 'purchase', opinion: 'opinion', consultation: 'consultation', contact: 'contact', survey: 'survey',
  promotion_sent: 'promotion sent', promotion_response: 'promotion response',
};

function timelineItem(item) {
  const when = item.ts.slice(0, 16).replace('T', ' ');
  if (item.type === 'transaction') {
    return h('li', {}, h('span', { class: 'when' }, when), h('span', { class: 'kind purchase' }, 'purchase'),
      h('span', {}, `${item.quantity} × ${item.sku} · ${money.format(Number(item.amount))} · ${item.channel} · ${item.region}`));
  }
  const details = [item.department];
  if (item.topic) details.push(item.topic);
  if (item.rating) details.push('rated ' + item.rating + '/5');
  if (item.campaign_id) details.push('campaign ' + item.campaign_id);
  if (item.sku) details.push(item.sku);
  if (item.rep) details.push('by ' + item.rep);
  if (item.kind === 'opinion' || item.kind === 'consultation') details.push(item.resolved_ts ? 'resolved ' + item.resolved_ts.slice(0, 10) : 'open');
  return h('li', {}, h('span', { class: 'when' }, when), h('span', { class: 'kind ' + item.kind }, KINDS[item.kind] || item.kind),
    h('span', { class: 'detail' }, details.join(' · ')));
}

function nowStamp() { return new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'); }

function interactionForm(c, reload) {
  const message = h('div', { 'aria-live': 'polite' });
  const kind = h('select', { name: 'kind' }, ['opinion', 'consultation', 'contact', 'survey', 'promotion_sent', 'promotion_response'].map((k) => h('option', { value: k }, KINDS[k])));
  const department = h('select', { name: 'department' }, ['service', 'sales', 'marketing', 'logistics', 'finance', 'compliance'].map((d) => h('option', { value: d }, d)));
  const topic = h('select', { name: 'topic' }, h('option', { value: '' }, '—'), ['price', 'quality', 'delivery', 'availability', 'service', 'billing', 'product_info'].map((t) => h('option', { value: t }, t)));
  const rating = h('input', { name: 'rating', type: 'number', min: 1, max: 5, step: 1 });
  const campaign = h('input', { name: 'campaign_id', placeholder: 'CMP001' });
  const sku = h('input', { name: 'sku', placeholder: 'P0001' });
  const rep = h('input', { name: 'rep', value: session?.name || '' });
  const resolved = h('input', { name: 'resolved', type: 'checkbox' });
  const form = h('form', { novalidate: true, id: 'interaction-form' },
    h('div', { class: 'form-grid' }, field('kind', 'Kind', kind), field('department', 'Department', department), field('topic', 'Topic', topic),
      field('rating', 'Rating (surveys, 1 to 5)', rating), field('campaign_id', 'Campaign', campaign), field('sku', 'Product', sku),
      field('rep', 'Representative', rep), h('label', { class: 'row' }, resolved, 'Resolved already')),
    message, h('button', { class: 'primary', type: 'submit' }, 'Log interaction'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    const ts = nowStamp();
    const body = {
      interaction_id: 'W' + Date.now().toString(36).toUpperCase() + Math.random().toString(36).slice(2, 6).toUpperCase(),
      customer_id: c.customer_id, ts, kind: kind.value, department: department.value, region: c.region,
      topic: topic.value || null, rating: rating.value ? Number(rating.value) : null, campaign_id: campaign.value.trim() || null,
      sku: sku.value.trim() || null, rep: rep.value.trim() || null, resolved_ts: resolved.checked ? ts : null,
    };
    try {
      await call('POST', '/interactions', body);
      await reload();
    } catch (err) {
      showFieldErrors(form, err, message);
    }
  });
  return h('section', { class: 'panel' }, h('h2', {}, 'Log an interaction'), form);
}

// ----------------------------------------------------------------- charts

const PALETTE = ['#2f5bd3', '#16a085', '#e67e22', '#8e44ad', '#c0392b', '#2c3e50', '#d4ac0d', '#7f8c8d'];

/** Horizontal bars: [{label, value, note}]. Negative values go left of zero. */
function barChart(items, { format = num, title } = {}) {
  const width = 560, row = 22, left = 170, right = 70;
  const height = items.length * row + 10;
  const min = Math.min(0, ...items.map((i) => i.value));
  const max = Math.max(0, ...items.map((i) => i.value)) || 1;
  const x = (v) => left + ((v - min) / (max - min || 1)) * (width - left - right);
  return s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
    s('title', {}, title),
    items.map((it, i) => {
      const y = 5 + i * row;
      const x0 = x(Math.min(0, it.value)), x1 = x(Math.max(0, it.value));
      return s('g', {},
        s('text', { x: left - 6, y: y + 14, 'text-anchor': 'end', class: 'label' }, it.label.length > 26 ? it.label.slice(0, 25) + '…' : it.label),
        s('rect', { x: x0, y: y + 3, width: Math.max(1, x1 - x0), height: row - 8, rx: 2, fill: it.value < 0 ? '#c0392b' : it.color || PALETTE[0] },
          s('title', {}, `${it.label}: ${format(it.value)}`)),
        s('text', { x: x1 + 4, y: y + 14 }, format(it.value)));
    }),
    min < 0 ? s('line', { x1: x(0), x2: x(0), y1: 0, y2: height, stroke: '#999' }) : null);
}

/** Lines over categories: xs (labels), series [{name, values, dashed, color}]. */
function lineChart(xs, series, { title, format = num, every: step } = {}) {
  const width = 560, height = 240, left = 50, right = 15, top = 12, bottom = 40;
  const all = series.flatMap((s2) => s2.values.filter((v) => v !== null && v !== undefined));
  const max = Math.max(1, ...all), min = Math.min(0, ...all);
  const x = (i) => left + (xs.length <= 1 ? 0 : (i / (xs.length - 1)) * (width - left - right));
  const y = (v) => top + (1 - (v - min) / (max - min || 1)) * (height - top - bottom);
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => min + f * (max - min));
  const every = step || Math.ceil(xs.length / 8);
  return s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
    s('title', {}, title),
    ticks.map((t) => s('g', {}, s('line', { x1: left, x2: width - right, y1: y(t), y2: y(t), stroke: '#eee' }),
      s('text', { x: left - 6, y: y(t) + 4, 'text-anchor': 'end' }, format(Math.round(t * 100) / 100)))),
    xs.map((label, i) => i % every === 0 ? s('text', { x: x(i), y: height - bottom + 16, 'text-anchor': 'middle' }, label) : null),
    series.map((se, k) => {
      const pts = se.values.map((v, i) => (v === null || v === undefined ? null : `${x(i)},${y(v)}`)).filter(Boolean);
      return s('g', {},
        s('polyline', { points: pts.join(' '), fill: 'none', stroke: se.color || PALETTE[k], 'stroke-width': 2, 'stroke-dasharray': se.dashed ? '5 4' : null }),
        se.values.map((v, i) => v === null || v === undefined ? null : s('circle', { cx: x(i), cy: y(v), r: 2.5, fill: se.color || PALETTE[k] },
          s('title', {}, `${xs[i]} ${se.name}: ${format(v)}`))));
    }),
    series.map((se, k) => s('g', {}, s('rect', { x: left + k * 120, y: height - 14, width: 10, height: 10, fill: se.color || PALETTE[k] }),
      s('text', { x: left + 14 + k * 120, y: height - 5, class: 'label' }, se.name))));
}

/** A grid of cells coloured by value: rows × cols. */
function heatmap(rows, cols, value, { title, format = num } = {}) {
  const cell = 64, left = 140, top = 24;
  const width = left + cols.length * cell + 10, height = top + rows.length * 30 + 10;
  const values = rows.flatMap((r) => cols.map((c2) => value(r, c2) || 0));
  const max = Math.max(1, ...values);
  return s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title },
    s('title', {}, title),
    cols.map((c2, j) => s('text', { x: left + j * cell + cell / 2, y: top - 8, 'text-anchor': 'middle', class: 'label' }, c2)),
    rows.map((r, i) => s('g', {},
      s('text', { x: left - 6, y: top + i * 30 + 19, 'text-anchor': 'end', class: 'label' }, r),
      cols.map((c2, j) => {
        const v = value(r, c2) || 0;
        const shade = Math.round(245 - (v / max) * 190);
        return s('g', {}, s('rect', { x: left + j * cell + 1, y: top + i * 30 + 1, width: cell - 2, height: 28, rx: 3, fill: `rgb(${shade},${shade + 5 > 255 ? 255 : shade + 5},255)` },
          s('title', {}, `${r} × ${c2}: ${format(v)}`)),
        s('text', { x: left + j * cell + cell / 2, y: top + i * 30 + 19, 'text-anchor': 'middle', fill: v / max > 0.55 ? '#fff' : '#1d2330' }, compact(v)));
      }))));
}

function compact(v) {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e3) return (v / 1e3).toFixed(1) + 'k';
  return fmt2.format(v);
}

/** The RFM segments placed by recency (columns) and frequency (rows). */
function rfmGrid(rows) {
  const place = {
    champions: [0, 0], loyal: [1, 0], at_risk: [2, 0],
    new: [0, 1], potential: [1, 1], hibernating: [2, 1],
  };
  const width = 560, height = 250, left = 70, top = 24, cw = (width - left - 10) / 3, ch = (height - top - 20) / 2;
  const max = Math.max(...rows.map((r) => r.share), 0.01);
  const known = rows.filter((r) => place[r.segment]);
  return s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'RFM grid' },
    s('title', {}, 'RFM segments by recency and frequency'),
    ['recent', 'a while ago', 'long ago'].map((t, j) => s('text', { x: left + j * cw + cw / 2, y: top - 8, 'text-anchor': 'middle' }, 'bought ' + t)),
    ['frequent', 'seldom'].map((t, i) => s('text', { x: left - 6, y: top + i * ch + ch / 2, 'text-anchor': 'end' }, t)),
    known.map((r) => {
      const [j, i] = place[r.segment];
      const alpha = 0.15 + 0.85 * (r.share / max);
      return s('g', {},
        s('rect', { x: left + j * cw + 2, y: top + i * ch + 2, width: cw - 4, height: ch - 4, rx: 6, fill: PALETTE[0], 'fill-opacity': alpha.toFixed(2) },
          s('title', {}, `${r.segment}: ${fmt.format(r.customers)} customers (${pct(r.share)}), mean revenue ${money.format(r.avg_monetary)}`)),
        s('text', { x: left + j * cw + cw / 2, y: top + i * ch + ch / 2 - 6, 'text-anchor': 'middle', class: 'label', 'font-weight': 600 }, r.segment.replace('_', ' ')),
        s('text', { x: left + j * cw + cw / 2, y: top + i * ch + ch / 2 + 12, 'text-anchor': 'middle', class: 'label' }, `${fmt.format(r.customers)} · ${pct(r.share)}`));
    }));
}

/** The rows of a table as an HTML table (every column). */
function numbersTable(rows, columns) {
  if (!rows.length) return h('p', { class: 'muted' }, 'No rows.');
  const cols = columns || Object.keys(rows[0]);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, cols.map((k) => h('th', { class: typeof rows[0][k] === 'number' ? 'num' : null }, k.replace(/_/g, ' '))))),
    h('tbody', {}, rows.map((r) => h('tr', {}, cols.map((k) => h('td', { class: typeof r[k] === 'number' ? 'num' : null }, num(r[k]))))))));
}

// --------------------------------------------------------------- analyses

/** The dashboard's charts: the analysis each reads and how it is drawn. */
const CHARTS = [
  { name: 'rfm', title: 'RFM grid', draw: (rows) => rfmGrid(rows) },
  { name: 'pareto', title: 'Pareto: revenue of the top buyers', curve: true },
  {
    name: 'performance', title: 'Revenue by category × sales channel',
    draw: (rows) => {
      const cats = [...new Set(rows.map((r) => r.category))].sort();
      const chans = [...new Set(rows.map((r) => r.channel))].sort();
      const sum = new Map();
      for (const r of rows) sum.set(r.category + '\u0000' + r.channel, (sum.get(r.category + '\u0000' + r.channel) || 0) + r.revenue);
      return heatmap(cats, chans, (a, b) => sum.get(a + '\u0000' + b), { title: 'Revenue by category and channel', format: (v) => money.format(v) });
    },
  },
  {
    name: 'prospecting', title: 'New customers per month, with forecast',
    draw: (rows) => {
      const months = rows.map((r) => r.month);
      const actual = rows.map((r) => (r.kind === 'actual' ? r.new_customers : null));
      const forecast = rows.map((r, i) => (r.kind !== 'actual' || (rows[i + 1] && rows[i + 1].kind !== 'actual') ? r.new_customers : null));
      return lineChart(months, [{ name: 'actual', values: actual }, { name: 'forecast', values: forecast, dashed: true, color: '#e67e22' }], { title: 'New customers per month' });
    },
  },
  {
    name: 'product_affinity', title: 'Products bought together (lift)',
    draw: (rows) => barChart(rows.slice(0, 12).map((r) => ({ label: r.sku_a + ' + ' + r.sku_b, value: r.lift })), { title: 'Lift of product pairs' }),
  },
  {
    name: 'promotion', title: 'Campaign return on investment',
    draw: (rows) => barChart(rows.map((r) => ({ label: r.campaign_id + ' (' + r.channel + ')', value: r.roi })), { title: 'ROI per campaign', format: (v) => fmt2.format(v) }),
  },
  {
    name: 'opinions', title: 'Opinion and consultation resolution',
    draw: (rows) => {
      const by = new Map();
      for (const r of rows) {
        const k = r.kind + ': ' + r.topic;
        const e = by.get(k) || { cases: 0, resolved: 0 };
        e.cases += r.cases; e.resolved += r.resolved;
        by.set(k, e);
      }
      return barChart([...by.entries()].map(([label, e]) => ({ label, value: e.cases ? e.resolved / e.cases : 0, color: PALETTE[1] })),
        { title: 'Resolution rate by kind and topic', format: pct });
    },
  },
  {
    name: 'satisfaction', title: 'Satisfaction: most and least satisfied fifths',
    draw: (rows) => barChart(rows.map((r) => ({ label: r.group + ' (' + fmt.format(r.customers) + ')', value: r.mean_rating, color: PALETTE[2] })),
      { title: 'Mean rating by group', format: (v) => fmt2.format(v) }),
  },
];

async function analysesPage(_, current) {
  await sessionReady;
  if (!current() || !session) return;
  document.title = 'Analyses · CRM';
  const url = new URLSearchParams(location.search);
  const segment = h('select', { name: 'segment', 'aria-label': 'Segment' }, h('option', { value: '' }, 'All customers'));
  const asOf = h('input', { type: 'date', name: 'as_of', 'aria-label': 'As of', value: url.get('as_of') || '' });
  const cards = h('div', { class: 'stack' });
  const others = h('div', { class: 'stack' });
  const run = () => {
    const q = { segment: segment.value, as_of: asOf.value };
    history.replaceState(null, '', '/analyses' + params(q));
    draw(q);
  };
  fill(view, 
    h('div', { class: 'spread' }, h('h1', {}, 'Analyses'),
      h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); run(); } }, h('span', { class: 'muted' }, 'On'), segment,
        h('span', { class: 'muted' }, 'as of'), asOf, h('button', { class: 'primary', type: 'submit', id: 'run-analyses' }, 'Run'))),
    cards, h('h2', {}, 'Every analysis'), others);
  const [segments, list, plugins] = await Promise.all([api('/segments').catch(() => []), api('/analyses'), api('/plugins').catch(() => [])]);
  if (!current()) return;
  for (const sg of segments) segment.append(h('option', { value: sg.name, selected: url.get('segment') === sg.name }, sg.name));

  function draw(q) {
    fill(cards, h('div', { class: 'grid wide' }, CHARTS.map((chart) => chartCard(chart, q))));
    const charted = new Set(CHARTS.map((c) => c.name));
    fill(others, h('div', { class: 'panel' }, h('table', {}, h('tbody', {},
      list.filter((a) => !charted.has(a.name)).map((a) => tableRow(a.name, a.description, '/analyses/' + enc(a.name), q)),
      plugins.filter((p) => p.enabled).flatMap((p) => p.analyses.map((name) =>
        tableRow(p.id + ': ' + name, 'from the ' + p.name + ' plugin', '/plugins/' + enc(p.id) + '/analyses/' + enc(name), { segment: q.segment })))))));
  }

  function tableRow(name, description, path, q) {
    const out = h('div');
    const button = h('button', {
      type: 'button', onclick: async () => {
        button.disabled = true;
        fill(out, h('p', { class: 'muted' }, 'Running…'));
        try { fill(out, numbersTable(await api(path + params(q)))); } catch (err) { fill(out, errorBox(err)); }
        button.disabled = false;
      },
    }, 'Run');
    const csv = path.startsWith('/analyses/') ? h('a', { href: '/api/v1' + path + '/csv' + params(q), download: '' }, 'CSV') : null;
    return h('tr', {}, h('td', {}, h('strong', {}, name), h('br'), h('span', { class: 'muted' }, description), out), h('td', { class: 'num' }, h('div', { class: 'row' }, button, csv)));
  }

  draw({ segment: segment.value, as_of: asOf.value });
}

function chartCard(chart, q) {
  const body = h('div', { class: 'body' }, h('p', { class: 'muted' }, 'Running…'));
  const card = h('section', { class: 'panel chart-card', dataset: { analysis: chart.name } },
    h('div', { class: 'spread' }, h('h2', {}, chart.title),
      h('a', { href: '/api/v1/analyses/' + enc(chart.name) + '/csv' + params(q), download: '' }, 'CSV')),
    body);
  (async () => {
    try {
      const rows = await api('/analyses/' + enc(chart.name) + params(q));
      let figure;
      if (chart.curve) {
        const curve = await api('/charts/pareto' + params(q));
        figure = lineChart(curve.map((p) => p.buyers_percent + '%'), [
          { name: 'revenue share', values: curve.map((p) => p.revenue_share * 100) },
          { name: 'even spread', values: curve.map((p) => p.buyers_percent), dashed: true, color: '#999' }],
        { title: 'Cumulative revenue share by share of buyers', format: (v) => Math.round(v) + '%', every: 10 });
      } else {
        figure = rows.length ? chart.draw(rows) : h('p', { class: 'muted' }, 'No data in this scope.');
      }
      fill(body, h('div', {}, figure), h('div', { class: 'numbers' }, numbersTable(rows)));
      card.dataset.ready = 'true';
    } catch (err) {
      fill(body, errorBox(err));
      card.dataset.ready = 'error';
    }
  })();
  return card;
}

// --------------------------------------------------------------- segments

async function segmentsPage(_, current) {
  await sessionReady;
  if (!current() || !session) return;
  document.title = 'Segments · CRM';
  const list = h('ul', { class: 'list', id: 'segment-list' });
  const name = h('input', { name: 'name', placeholder: 'name-of-the-segment', 'aria-label': 'Segment name', required: true });
  const description = h('input', { name: 'description', placeholder: 'What it selects', 'aria-label': 'Description' });
  const script = h('textarea', { name: 'script', spellcheck: 'false', 'aria-label': 'Script', placeholder: 'c.revenue > 1000.0 && c.tier == "gold"' });
  const gutter = h('div', { class: 'gutter', 'aria-hidden': 'true' });
  const status = h('div', { id: 'segment-status', 'aria-live': 'polite' });
  const sample = h('div', { id: 'segment-sample' });
  const message = h('div', { 'aria-live': 'polite', id: 'segment-message' });
  const history_ = h('div', { id: 'segment-history' });
  const explainId = h('input', { placeholder: 'Customer id', 'aria-label': 'Customer id to explain', size: 12 });
  const explainOut = h('div');
  const fields = h('div', { class: 'fields' });
  let revision = null;
  let saved = null;

  const saveButton = h('button', { class: 'primary', type: 'button', onclick: save, disabled: !can.editSegments() }, 'Save');
  const deleteButton = h('button', { class: 'danger', type: 'button', onclick: remove, disabled: true }, 'Delete');
  fill(view, h('h1', {}, 'Segments'), h('div', { class: 'segments-layout' },
    h('aside', { class: 'panel' }, h('div', { class: 'spread' }, h('h2', {}, 'Saved'),
      h('button', { type: 'button', onclick: () => open(null) }, 'New')), list),
    h('section', { class: 'panel stack' },
      h('div', { class: 'form-grid' }, h('label', { class: 'field' }, h('span', { class: 'label' }, 'Name'), name),
        h('label', { class: 'field' }, h('span', { class: 'label' }, 'Description'), description)),
      h('div', { class: 'editor' }, gutter, script),
      status, h('div', { class: 'row' }, saveButton, deleteButton), message, sample,
      h('h2', {}, 'Explain'),
      h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); explain(); } }, explainId, h('button', { type: 'submit' }, 'Explain')), explainOut,
      h('h2', {}, 'History'), history_),
    h('aside', { class: 'panel' }, h('h2', {}, 'Fields'), h('p', { class: 'muted' }, 'Click a field to put it in the script.'), fields)));

  function lines() {
    const n = script.value.split('\n').length;
    fill(gutter, ...Array.from({ length: n }, (_, i) => h('div', { dataset: { line: i + 1 } }, String(i + 1))));
  }
  script.addEventListener('scroll', () => { gutter.scrollTop = script.scrollTop; });
  script.addEventListener('keydown', (e) => {
    if (e.key === 'Tab' && !e.shiftKey) { e.preventDefault(); script.setRangeText('    ', script.selectionStart, script.selectionEnd, 'end'); changed(); }
  });

  let seq = 0;
  const test = debounce(async () => {
    const mine = ++seq;
    if (!script.value.trim()) { fill(status); fill(sample); return; }
    fill(status, h('span', { class: 'muted' }, 'Checking…'));
    try {
      const r = (await call('POST', '/segments/test', { script: script.value, description: description.value })).data;
      if (mine !== seq) return;
      lines();
      fill(status, h('div', { class: 'notice', id: 'segment-count' },
        `${fmt.format(r.members)} of ${fmt.format(r.customers)} customers match (${fmt2.format(r.milliseconds)} ms)`));
      const keys = [...new Set(r.sample.flatMap((m) => Object.keys(m.values)))];
      fill(sample, r.sample.length ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Id'), h('th', {}, 'Name'), keys.map((k) => h('th', {}, k)))),
        h('tbody', {}, r.sample.map((m) => h('tr', { class: 'link', onclick: () => go('/customers/' + enc(m.customer_id)) },
          h('td', {}, m.customer_id), h('td', {}, m.name), keys.map((k) => h('td', {}, num(m.values[k]))))))))
        : null);
    } catch (err) {
      if (mine !== seq) return;
      showScriptError(err);
    }
  }, 350);

  function showScriptError(err) {
    lines();
    const detail = err.problem?.detail || err.message;
    const at = /^line (\d+), column (\d+): (.*)$/s.exec(detail);
    if (at) {
      const line = Number(at[1]);
      gutter.querySelector(`[data-line="${line}"]`)?.classList.add('error-line');
      fill(status, h('div', { class: 'alert', id: 'segment-error', dataset: { line: at[1], column: at[2] } },
        h('strong', {}, `Line ${at[1]}, column ${at[2]}: `), at[3]));
    } else {
      fill(status, errorBox(err));
    }
    fill(sample);
  }

  function changed() { lines(); test(); }
  script.addEventListener('input', changed);

  async function save() {
    fill(message);
    const body = { script: script.value, description: description.value };
    try {
      const r = await call('PUT', '/segments/' + enc(name.value.trim()), body, revision ? { 'If-Match': `"${revision}"` } : {});
      revision = r.data.revision;
      saved = r.data.name;
      fill(message, h('div', { class: 'notice' }, `Saved as revision ${revision}.`));
      await refresh();
      await showHistory();
      deleteButton.disabled = !can.editSegments();
    } catch (err) {
      if (err.problem?.field === 'script') showScriptError(err);
      else fill(message, errorBox(err));
    }
  }

  async function remove() {
    if (!saved) return;
    try {
      await call('DELETE', '/segments/' + enc(saved));
      fill(message, h('div', { class: 'notice' }, `Deleted ${saved}.`));
      await refresh();
      open(null);
    } catch (err) { fill(message, errorBox(err)); }
  }

  async function explain() {
    if (!saved) { fill(explainOut, h('p', { class: 'muted' }, 'Save the segment to explain it for a customer.')); return; }
    try {
      const r = await api('/segments/' + enc(saved) + '/explain' + params({ customer_id: explainId.value.trim() }));
      fill(explainOut, explainView(r));
    } catch (err) { fill(explainOut, errorBox(err)); }
  }

  async function showHistory() {
    if (!saved) { fill(history_, h('p', { class: 'muted' }, 'Not saved yet.')); return; }
    const revs = await api('/segments/' + enc(saved) + '/history').catch(() => []);
    fill(history_, h('table', {}, h('tbody', {}, revs.map((r) => h('tr', {},
      h('td', {}, 'revision ' + r.revision), h('td', { class: 'muted' }, new Date(r.saved_at * 1000).toISOString().slice(0, 16).replace('T', ' ')),
      h('td', {}, h('code', {}, r.script.length > 70 ? r.script.slice(0, 69) + '…' : r.script)),
      h('td', {}, h('button', { type: 'button', onclick: () => { script.value = r.script; description.value = r.description; changed(); } }, 'Load')))))));
  }

  let segments = [];
  async function refresh() {
    segments = await api('/segments');
    fill(list, ...segments.map((sg) => h('li', { class: sg.name === saved ? 'active' : null, onclick: () => open(sg) },
      sg.name, h('small', {}, sg.description))));
  }

  function open(sg) {
    saved = sg ? sg.name : null;
    revision = sg ? sg.revision : null;
    name.value = sg ? sg.name : '';
    name.readOnly = !!sg;
    description.value = sg ? sg.description : '';
    script.value = sg ? sg.script : '';
    deleteButton.disabled = !sg || !can.editSegments();
    fill(message);
    fill(explainOut);
    for (const li of list.children) li.classList.toggle('active', li.firstChild.textContent === saved);
    history.replaceState(null, '', '/segments' + params({ name: saved }));
    changed();
    showHistory();
  }

  await refresh();
  if (!current()) return;
  const wanted = new URLSearchParams(location.search).get('name');
  open(segments.find((sg) => sg.name === wanted) || null);
  const fieldList = await api('/segments/fields').catch(() => []);
  const byOrigin = new Map();
  for (const f of fieldList) { if (!byOrigin.has(f.origin)) byOrigin.set(f.origin, []); byOrigin.get(f.origin).push(f); }
  fill(fields, ...[...byOrigin.entries()].map(([origin, fs]) => h('div', {}, h('h3', {}, origin),
    fs.map((f) => h('button', {
      type: 'button', title: f.doc + (f.values?.length ? ' (' + f.values.join(', ') + ')' : ''),
      onclick: () => { script.focus(); script.setRangeText('c.' + f.name, script.selectionStart, script.selectionEnd, 'end'); changed(); },
    }, h('code', {}, 'c.' + f.name), ' ', h('span', { class: 'muted' }, f.type))))));
}

/** An explanation: whether the customer is a member, and each part with the values read. */
function explainView(r) {
  const lines = [];
  const walk = (node, depth) => {
    if (node === null || typeof node !== 'object') { lines.push('  '.repeat(depth) + String(node)); return; }
    if (Array.isArray(node)) { for (const n of node) walk(n, depth); return; }
    const head = Object.entries(node).filter(([, v]) => v === null || typeof v !== 'object').map(([k, v]) => `${k}: ${v}`).join('  ');
    if (head) lines.push('  '.repeat(depth) + head);
    for (const [, v] of Object.entries(node)) if (v !== null && typeof v === 'object') walk(v, depth + 1);
  };
  walk(r, 0);
  return h('div', { class: 'explain', id: 'explain' }, lines.join('\n'));
}

// ---------------------------------------------------------------- plugins

async function pluginsPage(_, current) {
  await sessionReady;
  if (!current() || !session) return;
  document.title = 'Plugins · CRM';
  const message = h('div', { 'aria-live': 'polite' });
  const table = h('div', { class: 'table-wrap' });
  const details = h('div', { class: 'stack' });
  const file = h('input', { type: 'file', accept: '.tar.gz,.tgz,application/gzip', 'aria-label': 'Plugin package' });
  fill(view, h('h1', {}, 'Plugins'), message,
    h('section', { class: 'panel' }, table),
    can.managePlugins() ? h('section', { class: 'panel' }, h('h2', {}, 'Install a plugin'),
      h('p', { class: 'muted' }, 'A package is a tar.gz of the plugin\'s directory: plugin.toml, the component and its schemas (cargo xtask plugins builds them into target/plugins/).'),
      h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); upload('POST', '/plugins', file); } }, file, h('button', { class: 'primary', type: 'submit' }, 'Install'))) : null,
    details);

  async function upload(method, path, input) {
    const f = input.files[0];
    if (!f) { fill(message, h('div', { class: 'alert' }, 'Choose a package first.')); return; }
    try {
      const r = await call(method, path, new Blob([await f.arrayBuffer()], { type: 'application/gzip' }));
      fill(message, h('div', { class: 'notice' }, `${r.data.name} ${r.data.version} is installed and enabled.`));
      pluginSchemas = null;
      await load();
    } catch (err) { fill(message, errorBox(err)); }
  }

  async function act(method, path, done) {
    try {
      await call(method, path);
      fill(message, h('div', { class: 'notice' }, done));
      pluginSchemas = null;
      await load();
    } catch (err) { fill(message, errorBox(err)); }
  }

  async function load() {
    const plugins = await api('/plugins');
    if (!current()) return;
    fill(table, plugins.length ? h('table', { id: 'plugins' },
      h('thead', {}, h('tr', {}, ['Plugin', 'Version', 'State', 'Failures', 'Hooks', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, plugins.map((p) => {
        const upgradeFile = h('input', { type: 'file', accept: '.tar.gz,.tgz,application/gzip', 'aria-label': 'Newer package of ' + p.id });
        return h('tr', { dataset: { plugin: p.id } },
          h('td', {}, h('strong', {}, p.name), h('br'), h('span', { class: 'muted' }, p.id + ' · ' + p.description)),
          h('td', {}, p.version),
          h('td', {}, h('span', { class: 'chip ' + (p.enabled ? 'good' : 'bad') }, p.enabled ? 'enabled' : 'disabled'),
            p.disabled_reason ? h('div', { class: 'muted' }, p.disabled_reason) : null),
          h('td', { class: 'num' }, String(p.failures)),
          h('td', {}, [p.validates ? 'validate' : null, p.derives.length ? 'derives ' + p.derives.join(', ') : null,
            p.scores.length ? 'scores ' + p.scores.join(', ') : null, p.analyses.length ? 'analyses ' + p.analyses.join(', ') : null].filter(Boolean).join(' · ')),
          h('td', {}, h('div', { class: 'row' },
            h('button', { type: 'button', onclick: () => showDetails(p) }, 'Fields'),
            can.managePlugins() ? [
              p.enabled ? h('button', { type: 'button', onclick: () => act('POST', `/plugins/${enc(p.id)}/disable`, p.id + ' is disabled.') }, 'Disable')
                : h('button', { type: 'button', onclick: () => act('POST', `/plugins/${enc(p.id)}/enable`, p.id + ' is enabled.') }, 'Enable'),
              h('button', { type: 'button', class: 'danger', onclick: () => { if (confirm(`Remove ${p.id}? Its fields stay in the customers' attributes.`)) act('DELETE', `/plugins/${enc(p.id)}`, p.id + ' is removed.'); } }, 'Remove'),
              upgradeFile, h('button', { type: 'button', onclick: () => upload('PUT', `/plugins/${enc(p.id)}`, upgradeFile) }, 'Upgrade')] : null)));
      }))) : h('p', { class: 'muted' }, 'No plugin is installed.'));
  }

  async function showDetails(p) {
    const schema = await api('/plugins/' + enc(p.id) + '/fields').catch(() => ({ properties: {} }));
    const required = new Set(schema.required || []);
    fill(details, h('section', { class: 'panel', id: 'plugin-fields' }, h('h2', {}, p.name + ': fields'),
      h('table', {}, h('thead', {}, h('tr', {}, ['Field', 'Label', 'Type', 'Group', 'Rules'].map((t) => h('th', {}, t)))),
        h('tbody', {}, Object.entries(schema.properties || {}).map(([k, prop]) => h('tr', {},
          h('td', {}, h('code', {}, k)), h('td', {}, prop.title || ''), h('td', {}, prop.enum ? 'one of ' + prop.enum.join(', ') : prop.type || ''),
          h('td', {}, prop['x-crm-group'] || ''),
          h('td', {}, [required.has(k) ? 'required' : null, prop.readOnly ? 'computed by the plugin' : null, prop.pattern ? 'pattern ' + prop.pattern : null,
            prop.minimum !== undefined ? 'at least ' + prop.minimum : null, prop.maximum !== undefined ? 'at most ' + prop.maximum : null,
            prop.description || null].filter(Boolean).join('; ')))))),
      p.analyses.length ? [h('h2', {}, 'Analyses'), h('p', {}, p.analyses.map((a) => h('a', { class: 'chip', href: '/analyses' }, a)))] : null));
  }

  await load();
}

// ----------------------------------------------------------------- import

async function importsPage(_, current) {
  await sessionReady;
  if (!current() || !session) return;
  document.title = 'Import · CRM';
  const files = h('input', { type: 'file', multiple: true, accept: '.csv,text/csv', name: 'files', 'aria-label': 'CSV files' });
  const skip = h('input', { type: 'checkbox', name: 'skip_invalid' });
  const message = h('div', { 'aria-live': 'polite' });
  const job = h('div', { id: 'import-job' });
  const jobs = h('div');
  fill(view, h('h1', {}, 'Import'),
    h('section', { class: 'panel stack' },
      h('p', { class: 'muted' }, 'Upload any of customers.csv, products.csv, campaigns.csv, transactions.csv and interactions.csv (the format crm export writes). Records already there are updated; nothing else is touched.'),
      h('form', { class: 'stack', onsubmit: (e) => { e.preventDefault(); start(); } },
        h('div', { class: 'row' }, files, h('label', { class: 'row' }, skip, 'Import the valid rows and set the invalid ones aside')),
        h('button', { class: 'primary', type: 'submit', disabled: !can.importData() }, 'Import')),
      message, job),
    h('section', { class: 'panel' }, h('h2', {}, 'Imports since the server started'), jobs));

  async function start() {
    fill(message);
    if (!files.files.length) { fill(message, h('div', { class: 'alert' }, 'Choose the CSV files first.')); return; }
    const form = new FormData();
    for (const f of files.files) form.append(f.name, f, f.name);
    try {
      const r = await call('POST', '/imports' + params({ skip_invalid: skip.checked ? 'true' : '' }), form);
      follow(r.data.id);
    } catch (err) { fill(message, errorBox(err)); }
  }

  async function follow(id) {
    for (;;) {
      let j;
      try { j = await api('/imports/' + enc(id)); } catch (err) { fill(job, errorBox(err)); return; }
      if (!current()) return;
      fill(job, jobView(j));
      if (j.state !== 'running') { pluginSchemas = null; facets = null; listJobs(); return; }
      await new Promise((r) => setTimeout(r, 400));
    }
  }

  async function listJobs() {
    const all = await api('/imports').catch(() => []);
    fill(jobs, all.length ? h('table', {}, h('tbody', {}, all.map((j) => h('tr', {},
      h('td', {}, j.id), h('td', {}, j.state), h('td', {}, j.by), h('td', {}, j.files.map((f) => `${f.file}: ${fmt.format(f.added)} added, ${fmt.format(f.updated)} updated, ${fmt.format(f.rejected)} rejected`).join('; ')),
      h('td', {}, h('button', { type: 'button', onclick: () => follow(j.id) }, 'Show'))))))
      : h('p', { class: 'muted' }, 'None yet.'));
  }

  await listJobs();
}

function jobView(j) {
  const bar = h('div');
  bar.style.width = (j.bytes_total ? Math.round((100 * j.bytes_done) / j.bytes_total) : j.state === 'running' ? 0 : 100) + '%';
  return h('div', { class: 'stack', dataset: { state: j.state } },
    h('div', { class: 'spread' }, h('strong', {}, `Import ${j.id}: ${j.state}`), h('span', { class: 'muted' }, j.stage + ' · ' + fmt.format(j.rows_done) + ' rows')),
    h('div', { class: 'progress', role: 'progressbar', 'aria-valuemin': 0, 'aria-valuemax': 100 }, bar),
    j.problems?.length ? h('div', { class: 'alert', id: 'import-problems' }, h('strong', {}, 'Nothing was imported:'),
      h('ul', {}, j.problems.slice(0, 50).map((p) => h('li', {}, p)))) : null,
    j.error ? h('div', { class: 'alert' }, j.error) : null,
    j.files.length ? h('table', { id: 'import-report' }, h('thead', {}, h('tr', {}, ['File', 'Rows', 'Added', 'Updated', 'Unchanged', 'Rejected', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, j.files.map((f) => h('tr', {}, h('td', {}, f.file), [f.rows, f.added, f.updated, f.unchanged, f.rejected].map((n) => h('td', { class: 'num' }, fmt.format(n))),
        h('td', {}, f.rejected_rows ? h('a', { href: f.rejected_rows, download: '', class: 'rejected-rows' }, 'Rejected rows (CSV)') : null))))) : null);
}

// ------------------------------------------------------------------ users

async function usersPage(_, current) {
  document.title = 'Users · CRM';
  await sessionReady;
  if (!current() || !session) return;
  const message = h('div', { 'aria-live': 'polite' });
  const table = h('div', { class: 'table-wrap' });
  const name = h('input', { name: 'name', autocomplete: 'off', required: true });
  const role = h('select', { name: 'role' }, ['agent', 'viewer', 'analyst', 'integrator', 'admin'].map((r) => h('option', { value: r }, r)));
  const password = h('input', { name: 'password', type: 'text', autocomplete: 'new-password', minlength: 10 });
  const form = h('form', { novalidate: true, id: 'user-form' },
    h('div', { class: 'form-grid' }, field('name', 'User name', name), field('role', 'Role', role),
      field('password', 'Password', password, 'At least 10 characters; give it to the user, who can be given a new one here.')),
    h('div', { class: 'row' }, h('button', { type: 'button', onclick: () => { password.value = randomPassword(); } }, 'Make a password'),
      h('button', { class: 'primary', type: 'submit' }, 'Save user')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
    for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
    try {
      const r = await call('PUT', '/users/' + enc(name.value.trim()), { role: role.value, password: password.value });
      fill(message, h('div', { class: 'notice' }, `${r.data.name} (${r.data.role}) saved.`));
      await load();
    } catch (err) { showFieldErrors(form, err, message); }
  });
  view.replaceChildren();
  append(view, [h('h1', {}, 'Users'), message, h('section', { class: 'panel' }, table),
    h('section', { class: 'panel' }, h('h2', {}, 'Add a user, or set a role and password'), form)]);

  async function load() {
    const users = await api('/users');
    if (!current()) return;
    fill(table, users.length ? h('table', { id: 'users' }, h('thead', {}, h('tr', {}, ['User', 'Role', 'Saved', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, users.map((u) => h('tr', { dataset: { user: u.name } }, h('td', {}, u.name), h('td', {}, u.role),
        h('td', { class: 'muted' }, new Date(u.saved * 1000).toISOString().slice(0, 16).replace('T', ' ')),
        h('td', {}, h('div', { class: 'row' },
          h('button', { type: 'button', onclick: () => { name.value = u.name; role.value = u.role; password.value = ''; password.focus(); } }, 'Set password'),
          h('button', { type: 'button', class: 'danger', onclick: async () => {
            try { await call('DELETE', '/users/' + enc(u.name)); fill(message, h('div', { class: 'notice' }, u.name + ' removed.')); await load(); } catch (err) { fill(message, errorBox(err)); }
          } }, 'Remove')))))))
      : h('p', { class: 'muted' }, 'No users yet: people sign in with tokens only.'));
  }
  await load();
}

function randomPassword() {
  const alphabet = 'abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

// ------------------------------------------------------------------ start

render();
