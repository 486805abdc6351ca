// Smart Router SRE dashboard: plain JS, no dependencies, same origin as the admin API.
// The token (when the admin API requires one) is kept in sessionStorage only.
'use strict';

const TOKEN_KEY = 'smart-router-admin-token';
const EVENTS_SHOWN = 50;
const state = { role: null, status: null, pods: [], events: [], lastEventId: null, refreshTimer: null, busy: new Set() };

const $ = (id) => document.getElementById(id);

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    // Through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    else if (name === 'style') node.style.cssText = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function headers(extra) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return Object.assign(token ? { authorization: `Bearer ${token}` } : {}, extra || {});
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({}, options, { headers: headers(options && options.headers), cache: 'no-store' }));
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  return { status: response.status, ok: response.ok, body };
}

/** An optional endpoint (autoscaler, fleet): its body, or null when it does not answer (yet). */
async function optional(path) {
  try {
    const answer = await api(path);
    return answer.ok ? answer.body : null;
  } catch (_) {
    return null;
  }
}

function showError(message) {
  const box = $('error');
  box.hidden = !message;
  box.textContent = message || '';
}

function age(ms) {
  if (!ms) return '—';
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m${String(seconds % 60).padStart(2, '0')}s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h${String(Math.floor((seconds % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(seconds / 86400)}d`;
}

function podState(pod, tier) {
  if (pod.terminating) return 'terminating';
  if (!pod.ready) return 'not-ready';
  // SPEC 11: a voice agent that stopped heartbeating gets no new calls.
  if (pod.liveness === 'dead') return 'dead';
  if (pod.liveness === 'suspect') return 'suspect';
  if (pod.pending_removal) return 'removing';
  if (pod.draining) return 'draining';
  if (tier && tier.available.includes(pod.pod_name)) return 'available';
  return tier && tier.type === 'shared' ? 'full' : 'busy';
}

// ---- session and token -------------------------------------------------------

async function loadSession() {
  const session = await api('/api/v1/admin/session');
  if (session.status === 401) {
    state.role = null;
    $('token-form').hidden = false;
    $('forget-token').hidden = true;
    $('role').textContent = 'token needed';
    showError(sessionStorage.getItem(TOKEN_KEY) ? 'That token was refused.' : 'This admin API needs a token: enter a viewer (read-only) or operator token.');
    return false;
  }
  if (!session.ok) throw new Error(`session: HTTP ${session.status}`);
  state.role = session.body.role;
  $('token-form').hidden = true;
  $('forget-token').hidden = !session.body.tokens_required;
  $('role').textContent = session.body.tokens_required ? `${state.role} token` : 'open (no tokens configured)';
  document.body.dataset.role = state.role;
  return true;
}

$('token-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('token').value = '';
  await start();
});

$('forget-token').addEventListener('click', async () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
});

// ---- rendering -----------------------------------------------------------------

function card(label, value, tone, id) {
  const text = typeof value === 'string' && value.length > 8;
  return el('div', { class: `card ${tone || ''}`, 'data-card': id }, el('div', { class: 'label' }, label), el('div', { class: `value ${text ? 'text' : ''}` }, value));
}

function livenessSummary(liveness) {
  if (!liveness) return el('span', { class: 'na' }, 'not available');
  const named = [...liveness.suspect.map((pod) => `${pod} (suspect)`), ...liveness.dead.map((pod) => `${pod} (dead)`)];
  return named.length ? `${named.length}: ${named.join(', ')}` : 0;
}

function renderSummary(status, invariants) {
  const stream = (status.subsystems && status.subsystems.pod_stream) || {};
  const leader = status.subsystems && status.subsystems.watcher && status.subsystems.watcher.leader;
  const waiting = status.waiting === undefined ? el('span', { class: 'na' }, 'not available') : status.waiting;
  $('summary').replaceChildren(
    card('active calls', status.active_calls, '', 'active-calls'),
    card('pods', status.pods, '', 'pods'),
    card('draining', status.draining.length ? `${status.draining.length}: ${status.draining.join(', ')}` : 0, '', 'draining'),
    card('suspect / dead agents', livenessSummary(status.liveness), status.liveness && (status.liveness.suspect.length || status.liveness.dead.length) ? 'bad' : '', 'liveness'),
    card('waiting requests', waiting, status.waiting > 0 ? 'bad' : '', 'waiting'),
    card('invariants', invariants ? (invariants.ok ? 'ok' : `${invariants.violations.length} violated`) : '?', invariants && !invariants.ok ? 'bad' : 'good', 'invariants'),
    card('watcher leader', leader || 'none', leader ? '' : 'bad', 'leader'),
    card('pod-stream lag', stream.lag === undefined ? '—' : stream.lag, stream.lag > 0 ? 'bad' : '', 'lag'),
  );
}

function loadCell(pod, tier) {
  if (tier && tier.type === 'shared') {
    const max = tier.max_concurrent || 1;
    const calls = pod.active_calls;
    const percent = Math.min(100, Math.round((calls / max) * 100));
    return el('td', { class: 'calls' },
      el('span', { class: `load ${calls >= max ? 'full' : ''}`, title: `${calls} of ${max}` }, el('span', { style: `width:${percent}%` })),
      `${calls}/${max}`);
  }
  return el('td', { class: 'calls' }, String(pod.active_calls));
}

function actionCell(pod) {
  // A pod drained for removal is steered by the fleet size (POST /api/v1/admin/fleet/scale), not by a drain toggle.
  if (state.role !== 'operator' || pod.pending_removal) return el('td', {}, '');
  const draining = pod.draining;
  return el('td', {}, el('button', {
    type: 'button',
    'data-action': draining ? 'undrain' : 'drain',
    'data-pod': pod.pod_name,
    disabled: state.busy.has(pod.pod_name),
  }, draining ? 'Undrain' : 'Drain'));
}

// One listener on the container, not one per button: a click still counts when live
// events re-render the table between the press and the release.
$('pools').addEventListener('click', (event) => {
  const button = event.target instanceof Element ? event.target.closest('button[data-action]') : null;
  if (button && !button.disabled) setDrain(button.dataset.pod, button.dataset.action === 'drain');
});

let shownPools = '';

function renderPools(status, pods) {
  // Unchanged pools (ages aside) keep their DOM: only the age cells tick.
  const shown = JSON.stringify([status.pools, status.draining, pods, [...state.busy], state.role]);
  if (shown === shownPools) {
    for (const cell of $('pools').querySelectorAll('td[data-since]')) cell.textContent = age(Number(cell.dataset.since));
    return;
  }
  shownPools = shown;
  const byName = new Map(pods.map((pod) => [pod.pod_name, pod]));
  const sections = Object.entries(status.pools).map(([name, tier]) => {
    const rows = tier.assigned.map((podName) => {
      const pod = byName.get(podName) || { pod_name: podName, active_calls: tier.load[podName] || 0, ready: true, draining: status.draining.includes(podName) };
      const podStateName = podState(pod, tier);
      return el('tr', { 'data-pod': podName, 'data-state': podStateName },
        el('td', {}, podName),
        el('td', {}, el('span', { class: `state ${podStateName}` }, podStateName.replace('-', ' '))),
        loadCell(pod, tier),
        el('td', { 'data-since': pod.updated_at || '', title: pod.updated_at ? new Date(pod.updated_at).toISOString() : '' }, age(pod.updated_at)),
        el('td', { class: 'uid', title: pod.uid || '' }, pod.uid ? pod.uid.slice(0, 8) : '—'),
        actionCell(pod));
    });
    const capacity = tier.type === 'shared' ? `shared, up to ${tier.max_concurrent} calls per pod` : 'exclusive';
    return el('div', { class: 'tier', 'data-tier': name },
      el('h3', {}, name,
        el('span', { class: 'meta' }, `${capacity} · target ${tier.target} · ${tier.assigned.length} assigned · ${tier.available.length} available`),
        tier.available.length === 0 ? el('span', { class: 'none' }, 'no pod available') : null),
      rows.length
        ? el('table', {}, el('thead', {}, el('tr', {}, ['pod', 'state', 'calls', 'changed', 'uid', ''].map((h) => el('th', {}, h)))), el('tbody', {}, rows))
        : el('p', { class: 'na', style: 'margin:8px 12px' }, 'no pods in this tier'));
  });
  $('pools').replaceChildren(...sections);
}

function facts(pairs) {
  return pairs.flatMap(([term, value]) => [el('dt', {}, term), el('dd', {}, value === null || value === undefined ? el('span', { class: 'na' }, 'not available') : value)]);
}

function renderCapacity(status, autoscaler, fleet) {
  const decision = autoscaler && autoscaler.last_decision;
  $('capacity').replaceChildren(...facts([
    ['waiting requests', status.waiting],
    ['autoscaler', autoscaler ? (autoscaler.enabled ? `on, ${autoscaler.min_replicas}–${autoscaler.max_replicas} replicas, buffer ${autoscaler.buffer}` : 'off') : null],
    ['desired / current', autoscaler && autoscaler.desired_replicas !== undefined ? `${autoscaler.desired_replicas} / ${autoscaler.current_replicas}` : null],
    ['last decision', decision ? `${decision.from} → ${decision.to} (${decision.reason}), ${age(Number(decision.at) || Date.parse(decision.at))} ago` : autoscaler ? 'none yet' : null],
    ['fleet replicas', fleet ? `${fleet.replicas} (target ${fleet.target})` : null],
    ['pending removal', fleet ? ((fleet.pending_removal || []).join(', ') || 'none') : null],
  ]));
}

/** The split between agent versions (SPEC 12): revision, guardrail, and each version's figures. */
function renderRollout(rollout) {
  if (!rollout) {
    $('rollout-summary').replaceChildren(el('span', { class: 'na' }, 'not available'));
    $('rollout').replaceChildren();
    return;
  }
  const guard = rollout.guardrail_state || { state: 'off' };
  const guardText = guard.state === 'off' ? 'guardrail off'
    : guard.state === 'held' ? 'guardrail rolled back: set a new split to resume'
    : `guardrail ${guard.state}${rollout.guardrail ? ` (max excess ${rollout.guardrail.max_excess_pp} points over ${rollout.guardrail.min_calls} calls)` : ''}`;
  $('rollout-summary').replaceChildren(
    rollout.revision === null ? 'no split: every version serves' : `revision ${rollout.revision}, ${rollout.assignment}; `,
    rollout.revision === null ? '' : el('span', { class: `state ${guard.state === 'held' || guard.state === 'tripped' ? 'draining' : 'available'}`, 'data-guardrail': guard.state }, guardText));
  const canaries = new Map((guard.canaries || []).map((canary) => [canary.version, canary]));
  const rows = Object.entries(rollout.versions || {}).map(([version, figures]) => {
    const canary = canaries.get(version);
    return el('tr', { 'data-version': version },
      el('td', {}, version === '' ? '(no label)' : version),
      el('td', {}, figures.percent === null ? '–' : `${figures.percent} %`),
      el('td', {}, `${figures.free} / ${figures.pods}`),
      el('td', {}, String(figures.live_calls)),
      el('td', {}, String(figures.allocations)),
      el('td', {}, String(figures.spills)),
      el('td', {}, `${figures.connected} / ${figures.connect_timeouts}`),
      el('td', { class: 'releases' }, Object.entries(figures.releases || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([reason, count]) => `${reason} ${count}`).join(', ')),
      el('td', {}, version === guard.stable ? 'stable' : canary && canary.failure_rate !== null ? `${Math.round(canary.failure_rate * 1000) / 10} % of ${canary.known}` : ''));
  });
  $('rollout').replaceChildren(rows.length
    ? el('table', {}, el('thead', {}, el('tr', {}, ['version', 'split', 'free / pods', 'live calls', 'allocations', 'spills', 'connected / timeouts', 'releases', 'failure rate'].map((h) => el('th', {}, h)))), el('tbody', {}, rows))
    : el('p', { class: 'na' }, 'no versions known'));
}

function renderInvariants(invariants) {
  if (!invariants) {
    $('invariants').replaceChildren(el('span', { class: 'na' }, 'not available'));
    return;
  }
  if (invariants.ok) {
    $('invariants').replaceChildren(el('span', { class: 'state available' }, 'all invariants hold'));
    return;
  }
  $('invariants').replaceChildren(el('ul', {}, invariants.violations.map((v) => el('li', {}, `${v.rule}: ${v.pod || v.call_sid || ''} ${v.detail || ''}`))));
}

function eventRow(event, fresh) {
  const details = Object.entries(event)
    .filter(([key, value]) => value !== '' && !['id', 'stream', 'type', 'at', 'call_sid', 'pod', 'name', 'tier', 'labels', 'rv', 'term'].includes(key))
    .map(([key, value]) => `${key}=${value}`).join(' ');
  return el('tr', { class: fresh ? 'fresh' : '', 'data-event-id': event.id, 'data-type': event.type },
    el('td', {}, new Date(event.at).toLocaleTimeString()),
    el('td', {}, event.type),
    el('td', {}, event.call_sid || ''),
    el('td', {}, event.pod || ''),
    el('td', {}, event.tier || ''),
    el('td', {}, details));
}

function renderEvents(freshIds) {
  $('events').replaceChildren(...state.events.map((event) => eventRow(event, freshIds && freshIds.has(event.id))));
}

// ---- data ----------------------------------------------------------------------

async function refresh() {
  state.refreshTimer = null;
  const [status, pods, invariants, autoscaler, fleet, rollout] = await Promise.all([
    api('/api/v1/status'), api('/api/v1/admin/pods'), optional('/api/v1/admin/invariants'),
    optional('/api/v1/admin/autoscaler'), optional('/api/v1/admin/fleet'), optional('/api/v1/admin/rollout'),
  ]);
  if (!status.ok) {
    showError(`status: ${(status.body && status.body.error) || `HTTP ${status.status}`}`);
    return;
  }
  showError('');
  state.status = status.body;
  state.pods = pods.ok ? pods.body.pods : [];
  renderSummary(status.body, invariants);
  renderPools(status.body, state.pods);
  renderCapacity(status.body, autoscaler, fleet);
  renderInvariants(invariants);
  renderRollout(rollout);
  document.body.dataset.refreshedAt = String(Date.now());
}

function scheduleRefresh(delay) {
  if (state.refreshTimer) return;
  state.refreshTimer = setTimeout(() => refresh().catch((error) => showError(error.message)), delay);
}

async function setDrain(podName, draining) {
  state.busy.add(podName);
  renderPools(state.status, state.pods);
  try {
    const answer = await api(draining ? '/api/v1/drain' : '/api/v1/undrain', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pod_name: podName }),
    });
    if (!answer.ok) showError(`${draining ? 'drain' : 'undrain'} ${podName}: ${(answer.body && answer.body.error) || `HTTP ${answer.status}`}`);
  } finally {
    state.busy.delete(podName);
    await refresh();
  }
}

// ---- live events (server-sent events over fetch, so the token goes in a header) ----

function setLive(on) {
  $('live').className = `badge ${on ? 'on' : 'off'}`;
  $('live').textContent = on ? 'live' : 'reconnecting…';
  document.body.dataset.live = on ? '1' : '0';
}

function onEvents(batch) {
  // A reload after a resync may already hold some of them.
  const shown = new Set(state.events.map((event) => event.id));
  batch = batch.filter((event) => !shown.has(event.id));
  const fresh = new Set(batch.map((event) => event.id));
  state.events = batch.reverse().concat(state.events).slice(0, EVENTS_SHOWN);
  renderEvents(fresh);
  scheduleRefresh(100);
}

async function follow() {
  for (;;) {
    try {
      const extra = state.lastEventId ? { 'last-event-id': state.lastEventId } : {};
      const response = await fetch('/api/v1/admin/events/stream', { headers: headers(extra), cache: 'no-store' });
      if (!response.ok || !response.body) throw new Error(`event stream: HTTP ${response.status}`);
      setLive(true);
      // Events published while we were away come first (Last-Event-ID): refresh the snapshot too.
      scheduleRefresh(0);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const batch = [];
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let id = null;
          let name = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) id = line.slice(4);
            else if (line.startsWith('event: ')) name = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (id) state.lastEventId = id;
          // We were away too long for a replay: the feed skipped ahead, so reload the list instead.
          if (name === 'resync') void reloadEvents();
          else if (data) batch.push(JSON.parse(data));
        }
        if (batch.length) onEvents(batch);
      }
    } catch (_) {
      // fall through to the reconnect below
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function reloadEvents() {
  const events = await api(`/api/v1/admin/events?limit=${EVENTS_SHOWN}`);
  if (events.ok) {
    state.events = events.body.events;
    renderEvents();
  }
}

let following = false;
async function start() {
  try {
    if (!(await loadSession())) return;
    const [events] = await Promise.all([api(`/api/v1/admin/events?limit=${EVENTS_SHOWN}`), refresh()]);
    if (events.ok) {
      state.events = events.body.events;
      renderEvents();
    }
    if (!following) {
      following = true;
      void follow();
      // A slow heartbeat for what emits no event (a drain by someone else, ages).
      setInterval(() => scheduleRefresh(0), 5000);
    }
  } catch (error) {
    showError(error.message);
  }
}

start();
