// The dashboard: reads the v2 API with the viewer's token (sessionStorage, never the URL), or with the token of the
// share link it was opened by (/share/<token>: one site, read-only), and draws what it answers. Everything the view
// shows is in the query string, so a URL is a shareable, reloadable view. No dependencies.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const TOKEN = 'analytics.token';
  const LIVE_EVERY_MS = 30000;
  const METRICS = [
    ['visitors', 'Unique visitors', 'count'], ['visits', 'Visits', 'count'], ['pageviews', 'Pageviews', 'count'],
    ['views_per_visit', 'Views per visit', 'plain'], ['bounce_rate', 'Bounce rate', 'percent'],
    ['visit_duration', 'Visit duration', 'duration'],
  ];
  const PANELS = [
    ['path', 'Top pages'], ['entry_page', 'Entry pages'], ['exit_page', 'Exit pages'], ['source', 'Sources'],
    ['referrer', 'Referrers'], ['utm_source', 'UTM sources'], ['utm_medium', 'UTM mediums'],
    ['utm_campaign', 'UTM campaigns'], ['country', 'Countries'], ['device', 'Devices'], ['browser', 'Browsers'],
    ['os', 'Operating systems'], ['event_type', 'Events'], ['props', 'Properties'],
  ];
  const NAMES = {
    event_type: 'event', entry_page: 'entry page', exit_page: 'exit page', utm_source: 'UTM source',
    utm_medium: 'UTM medium', utm_campaign: 'UTM campaign',
  };
  const OPERATORS = { '==': 'is', '!=': 'is not', '~': 'contains' };
  const SVG = 'http://www.w3.org/2000/svg';
  const regions = Intl.DisplayNames ? new Intl.DisplayNames(['en'], { type: 'region' }) : null;
  const shared = /^\/share\/([^/]+)$/.exec(location.pathname);
  const shareToken = shared ? decodeURIComponent(shared[1]) : null;
  let site = shared ? '' : decodeURIComponent(location.pathname.replace(/^\/dashboard\/?/, ''));
  let generation = 0;
  let liveTimer = null;
  let lastSeries = null;
  let propKey = null; // the props key whose values the Properties panel shows, or null for the keys

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, params) {
    const headers = {};
    const token = shareToken || sessionStorage.getItem(TOKEN);
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(`${path}?${new URLSearchParams(params)}`, { headers, cache: 'no-store' });
    } catch (error) {
      throw new ApiError(0, 'The analytics API cannot be reached: check the connection, then reload.');
    }
    const body = await response.json().catch(() => null);
    if (response.ok && body) return body.data;
    if (response.status === 503) throw new ApiError(503, 'The database is not answering (503): try again in a moment.');
    const detail = body && (body.message || (body.errors || []).map((e) => `${e.path}: ${e.message}`).join('; '));
    throw new ApiError(response.status, detail || `The API answered ${response.status}.`);
  }

  function node(tag, attributes = {}, text = '', namespace = null) {
    const element = namespace ? document.createElementNS(namespace, tag) : document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
    if (text !== '') element.textContent = text;
    return element;
  }

  // Numbers as people read them: 1.2k, 3.4M; durations as 45s, 3m 20s, 1h 5m.
  function compact(value) {
    const size = Math.abs(value);
    if (size < 1000) return String(Math.round(value * 100) / 100);
    const [unit, suffix] = size < 1e6 ? [1e3, 'k'] : size < 1e9 ? [1e6, 'M'] : [1e9, 'B'];
    const scaled = value / unit;
    return `${Math.abs(scaled) < 100 ? Number(scaled.toFixed(1)) : Math.round(scaled)}${suffix}`;
  }

  function duration(seconds) {
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  function formatted(kind, value) {
    if (value === null || value === undefined) return '—';
    if (kind === 'count') return compact(value);
    if (kind === 'percent') return `${value}%`;
    if (kind === 'duration') return duration(value);
    return String(value);
  }

  // Filters: `;`-separated, and `;` `|` `\` inside a value escaped with a backslash, as the API reads them.
  function splitFilters(text) {
    const parts = [];
    let current = '';
    for (let i = 0; i < text.length; i += 1) {
      if (text[i] === '\\' && i + 1 < text.length) current += text[i] + text[(i += 1)];
      else if (text[i] === ';') { if (current) parts.push(current); current = ''; }
      else current += text[i];
    }
    if (current) parts.push(current);
    return parts;
  }
  const escapeValue = (value) => value.replace(/[\\;|]/g, '\\$&');
  const unescapeValue = (value) => value.replace(/\\(.)/g, '$1');

  function readState() {
    const query = new URLSearchParams(location.search);
    return {
      period: query.get('period') || '30d',
      date: query.get('date') || '',
      from: query.get('from') || '',
      to: query.get('to') || '',
      timezone: query.get('timezone') || Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC',
      filters: splitFilters(query.get('filters') || ''),
    };
  }

  // The API's parameters for this view; the page's URL holds the same, without the site (it is in the path).
  function parameters(state) {
    const params = { period: state.period, timezone: state.timezone };
    if (state.period === 'custom') Object.assign(params, { from: state.from, to: state.to });
    else if (state.date) params.date = state.date;
    if (state.filters.length) params.filters = state.filters.join(';');
    return params;
  }

  function navigate(state, push) {
    const url = `${location.pathname}?${new URLSearchParams(parameters(state))}`;
    if (url !== location.pathname + location.search) history[push ? 'pushState' : 'replaceState'](null, '', url);
  }

  function show(which, message = '', isError = false) {
    $('status').textContent = message;
    $('status').hidden = !message;
    $('status').classList.toggle('error', isError);
    for (const id of ['sign-in', 'picker', 'report']) $(id).hidden = id !== which;
  }

  function fail(error) {
    if (shareToken && (error.status === 401 || error.status === 403)) {
      show(null, 'This share link does not work: it was revoked, or it was not copied whole. Ask for a new one.', true);
      return;
    }
    if (error.status === 401 || error.status === 403) {
      const refused = error.status === 403 || sessionStorage.getItem(TOKEN) !== null;
      sessionStorage.removeItem(TOKEN);
      show('sign-in');
      $('sign-in-error').hidden = !refused;
      $('sign-out').hidden = true;
      $('token').focus();
      return;
    }
    show($('report').hidden ? null : 'report', error.message, true);
  }

  async function renderPicker() {
    document.title = 'Sites — analytics';
    const { sites } = await api('/api/v2/sites', {});
    const list = $('sites');
    list.replaceChildren(...sites.map((name) => {
      const item = node('li');
      item.append(node('a', { href: `/dashboard/${encodeURIComponent(name)}` }, name));
      return item;
    }));
    show('picker', sites.length ? '' : 'No site has data yet: send events to /api/ingestion/event.');
  }

  function renderControls(state) {
    $('period').value = state.period;
    $('date').value = state.date;
    $('from').value = state.from;
    $('to').value = state.to;
    $('timezone').value = state.timezone;
    $('controls').classList.toggle('is-custom', state.period === 'custom');
    $('filters').replaceChildren(...state.filters.map((filter) => {
      const match = /^([\w.]+)(==|!=|~)([\s\S]*)$/.exec(filter);
      const label = match
        ? `${NAMES[match[1]] || match[1].replace('_', ' ')} ${OPERATORS[match[2]]} ${unescapeValue(match[3])}`
        : filter;
      const chip = node('button', { type: 'button', class: 'chip', 'data-filter': filter, 'aria-label': `Remove filter: ${label}` }, `${label} ✕`);
      chip.addEventListener('click', () => {
        const next = readState();
        next.filters = next.filters.filter((f) => f !== filter);
        navigate(next, true);
        renderReport();
      });
      const item = node('li');
      item.append(chip);
      return item;
    }));
  }

  function renderMetrics(results) {
    $('metrics').replaceChildren(...METRICS.map(([metric, label, kind]) => {
      const { value, change } = results[metric];
      const tile = node('div', { class: 'metric', 'data-metric': metric, 'data-value': String(value) });
      tile.append(node('span', { class: 'label' }, label), node('strong', { class: 'value' }, formatted(kind, value)));
      let text = 'no earlier data';
      let mood = '';
      if (change !== null && change !== undefined) {
        const unit = metric === 'bounce_rate' ? ' pts' : '%';
        text = `${change > 0 ? '↑' : change < 0 ? '↓' : '→'} ${Math.abs(change)}${unit}`;
        const better = metric === 'bounce_rate' ? change < 0 : change > 0;
        mood = change === 0 ? '' : better ? 'good' : 'bad';
      }
      tile.append(node('span', { class: `change ${mood}`, 'data-change': String(change ?? '') }, text));
      return tile;
    }));
  }

  function shortDate(bucket, interval) {
    if (interval === 'hour') return bucket.slice(11, 16);
    if (interval === 'month') return bucket.slice(0, 7);
    return bucket.slice(5, 10);
  }

  // Drawn at the figure's own width, so its text stays readable on a phone; redrawn when that width changes.
  function renderChart(timeseries) {
    lastSeries = timeseries;
    const rows = timeseries.results;
    const figure = $('chart');
    figure.dataset.interval = timeseries.interval;
    figure.dataset.buckets = rows.map((row) => row.date).join(' ');
    if (!rows.some((row) => row.visitors || row.pageviews)) {
      figure.replaceChildren(node('p', { class: 'empty' }, 'no data for this period'));
      return;
    }
    const width = Math.max(300, figure.clientWidth - 16);
    const [height, left, right, top, bottom] = [Math.min(240, width / 2.5), 44, 16, 10, 24];
    const most = Math.max(1, ...rows.map((row) => row.pageviews));
    const x = (i) => left + (rows.length === 1 ? (width - left - right) / 2 : (i * (width - left - right)) / (rows.length - 1));
    const y = (value) => height - bottom - (value / most) * (height - top - bottom);
    const svg = node('svg', { viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'Visitors and pageviews over the period' }, '', SVG);
    for (const value of [0, most / 2, most]) {
      svg.append(node('line', { class: 'grid', x1: left, x2: width - right, y1: y(value), y2: y(value) }, '', SVG));
      svg.append(node('text', { x: left - 6, y: y(value) + 4, 'text-anchor': 'end' }, compact(Math.round(value)), SVG));
    }
    const ticks = [...new Set([0, Math.floor((rows.length - 1) / 2), rows.length - 1])];
    for (const i of ticks) {
      const anchor = i === 0 ? 'start' : i === rows.length - 1 ? 'end' : 'middle';
      svg.append(node('text', { x: x(i), y: height - 6, 'text-anchor': anchor }, shortDate(rows[i].date, timeseries.interval), SVG));
    }
    for (const metric of ['pageviews', 'visitors']) {
      const points = rows.map((row, i) => `${x(i).toFixed(1)},${y(row[metric]).toFixed(1)}`).join(' ');
      svg.append(node('polyline', { class: metric, points }, '', SVG));
    }
    if (rows.length <= 62) {
      rows.forEach((row, i) => {
        const dot = node('circle', { cx: x(i), cy: y(row.visitors), r: 3 }, '', SVG);
        dot.append(node('title', {}, `${row.date}: ${row.visitors} visitors, ${row.pageviews} pageviews`, SVG));
        svg.append(dot);
      });
    }
    const legend = node('figcaption', { class: 'legend' });
    legend.append(node('span', { class: 'visitors' }, 'Visitors '), node('span', { class: 'pageviews' }, 'Pageviews'));
    figure.replaceChildren(svg, legend);
  }

  function label(property, value) {
    if (value === null) return property === 'source' ? 'Direct / None' : '(none)';
    if (property === 'country' && regions) return regions.of(value) || value;
    return String(value);
  }

  function addFilter(property, value) {
    const state = readState();
    const text = value === null ? '(none)' : escapeValue(String(value));
    state.filters = state.filters.filter((filter) => !filter.startsWith(`${property}==`)).concat(`${property}==${text}`);
    navigate(state, true);
    renderReport();
  }

  // Events and props are counted in events; everything else in visitors.
  const countedIn = (property) => (property === 'event_type' || property.startsWith('props') ? 'events' : 'visitors');

  // A key's values are those of the events that have the key: not the rest of the events as "(none)".
  function keyed(property, filters) {
    if (!property.startsWith('props.')) return {};
    return { filters: [filters, `${property}!=(none)`].filter(Boolean).join(';') };
  }

  // The Properties panel lists the props keys; a key opens its values, and a value filters like any other row.
  function openProperty(key) {
    propKey = key;
    renderReport();
  }

  function panelRow(property, metric, most, row) {
    const value = row[property];
    const button = node('button', {
      type: 'button', class: 'row', 'data-value': value === null ? '(none)' : String(value),
      title: property === 'props' ? `Values of ${value}` : `Filter: ${property} is ${label(property, value)}`,
    });
    const bar = node('span', { class: 'bar' });
    bar.style.width = `${(100 * row[metric]) / most}%`;
    button.append(bar, node('span', { class: 'name' }, label(property, value)),
      node('span', { class: 'count', 'data-count': String(row[metric]) }, compact(row[metric])));
    button.addEventListener('click', () => (property === 'props' ? openProperty(value) : addFilter(property, value)));
    const item = node('li');
    item.append(button);
    return item;
  }

  // `params` asked for the panel's first page; "Show more" asks for the next ones, ten rows at a time.
  function renderPanel(property, title, breakdown, params) {
    const metric = countedIn(property);
    const panel = node('section', { class: 'panel', 'data-property': property });
    panel.append(node('h2', {}, title));
    if (property.startsWith('props.')) {
      const back = node('button', { type: 'button', class: 'back' }, '← All properties');
      back.addEventListener('click', () => openProperty(null));
      panel.append(back);
    }
    if (!breakdown.results.length) {
      panel.append(node('p', { class: 'empty' }, 'no data for this period'));
      return panel;
    }
    const most = Math.max(1, ...breakdown.results.map((row) => row[metric]));
    const list = node('ol');
    list.append(...breakdown.results.map((row) => panelRow(property, metric, most, row)));
    panel.append(list, node('p', { class: 'empty' }, `${metric} · ${breakdown.total_rows} in all`));
    let page = 1;
    const more = node('button', { type: 'button', class: 'more' }, 'Show more');
    more.hidden = breakdown.results.length >= breakdown.total_rows;
    more.addEventListener('click', async () => {
      more.disabled = true;
      try {
        const next = await api('/api/v2/stats/breakdown', { ...params, page: String(page + 1) });
        page += 1;
        list.append(...next.results.map((row) => panelRow(property, metric, most, row)));
        more.hidden = list.children.length >= next.total_rows || !next.results.length;
      } catch (error) {
        fail(error);
      } finally {
        more.disabled = false;
      }
    });
    panel.append(more);
    return panel;
  }

  async function refreshLive() {
    try {
      const { results } = await api('/api/v2/stats/realtime', { site_id: site });
      $('live').textContent = `${results.visitors} current visitor${results.visitors === 1 ? '' : 's'}`;
      $('live').hidden = false;
    } catch (error) {
      $('live').hidden = true;
    }
  }

  async function renderReport() {
    const current = (generation += 1);
    const state = readState();
    navigate(state, false);
    renderControls(state);
    const base = { site_id: site, ...parameters(state) };
    const panels = PANELS.map(([property, title]) => (
      property === 'props' && propKey !== null ? [`props.${propKey}`, `Property: ${propKey}`] : [property, title]));
    const panelParams = panels.map(([property]) => ({
      ...base, ...keyed(property, base.filters), property, limit: '10',
      metrics: countedIn(property) === 'events' ? 'events,visitors' : 'visitors',
    }));
    $('report').setAttribute('aria-busy', 'true');
    if ($('report').hidden) show(null, 'Loading…');
    let answers;
    try {
      answers = await Promise.all([
        api('/api/v2/stats/aggregate', { ...base, metrics: METRICS.map(([m]) => m).join(','), compare: 'previous_period' }),
        api('/api/v2/stats/timeseries', { ...base, metrics: 'visitors,pageviews' }),
        ...panelParams.map((params) => api('/api/v2/stats/breakdown', params)),
      ]);
    } catch (error) {
      if (current === generation) fail(error);
      return;
    } finally {
      if (current === generation) $('report').setAttribute('aria-busy', 'false');
    }
    if (current !== generation) return;
    const [aggregate, timeseries, ...breakdowns] = answers;
    const { from, to, timezone } = aggregate.period;
    const empty = !aggregate.results.pageviews.value && !aggregate.results.visitors.value;
    show('report', empty ? 'no data for this period' : `${from === to ? from : `${from} to ${to}`} (${timezone})`);
    $('sign-out').hidden = sessionStorage.getItem(TOKEN) === null;
    renderMetrics(aggregate.results);
    renderChart(timeseries);
    $('panels').replaceChildren(
      ...panels.map(([property, title], i) => renderPanel(property, title, breakdowns[i], panelParams[i])));
    if (liveTimer === null) {
      refreshLive();
      liveTimer = setInterval(refreshLive, LIVE_EVERY_MS);
    }
  }

  function showSite() {
    document.title = `${site} — analytics`;
    $('site-name').textContent = site;
    renderReport();
  }

  function start() {
    if (shareToken) {
      // A share link names no site: the API answers the one it shows.
      api('/api/v2/sites', {}).then(({ sites }) => { [site] = sites; showSite(); }).catch(fail);
    } else if (site) {
      showSite();
    } else {
      renderPicker().catch(fail);
    }
  }

  $('controls').addEventListener('submit', (event) => {
    event.preventDefault();
    const state = readState();
    Object.assign(state, {
      period: $('period').value, date: $('date').value, from: $('from').value, to: $('to').value,
      timezone: $('timezone').value.trim() || 'UTC',
    });
    if (state.period === 'custom' && !(state.from && state.to)) {
      $('controls').classList.add('is-custom');
      $('from').focus();
      return;
    }
    navigate(state, true);
    renderReport();
  });
  $('period').addEventListener('change', () => {
    $('controls').classList.toggle('is-custom', $('period').value === 'custom');
    if ($('period').value !== 'custom') $('controls').requestSubmit();
  });
  $('sign-in').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN, $('token').value.trim());
    $('token').value = '';
    $('sign-in-error').hidden = true;
    show(null, 'Loading…');
    start();
  });
  $('sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN);
    clearInterval(liveTimer);
    liveTimer = null;
    fail(new ApiError(401, ''));
  });
  window.addEventListener('popstate', () => { if (site) renderReport(); });
  window.addEventListener('resize', () => { if (lastSeries && !$('report').hidden) renderChart(lastSeries); });
  start();
})();
