// The browser client of the realtime WebSocket API: plain JavaScript, no build step.
// Every piece of server text reaches the page through textContent, never as HTML.
'use strict';

(() => {
  /** The room every connection is in from $connect on. */
  const LOBBY = 'lobby';
  /** API Gateway closes a connection after 10 idle minutes: ping well before. */
  const DEFAULT_PING_SECONDS = 300;
  /** The protocol's limit on `text`, in UTF-8 bytes. */
  const MAX_TEXT_BYTES = 32 * 1024;
  const ROOM_NAME = /^[A-Za-z0-9_-]{1,64}$/;
  const HISTORY_LIMIT = 50;
  /** Pages asked for when catching up after a reconnect (the protocol's largest). */
  const RESUME_PAGE_LIMIT = 100;
  /** Catching up stops after this many pages: then the latest page is loaded instead. */
  const RESUME_MAX_PAGES = 10;
  /**
   * A slow fan-out can deliver a message after a newer one: resuming starts this much before
   * the newest message seen (known ids are skipped), so nothing sent in between is lost.
   */
  const RESUME_SLACK_MS = 30_000;
  /** A join refused as too fast is asked again after the server's delay, at most this often. */
  const JOIN_RETRIES = 5;
  /** Rate-limit errors within this long are counted on one notice rather than each shown. */
  const RATE_NOTICE_MS = 10_000;
  /** Reconnect delays grow from the first to the last, each with jitter. */
  const BACKOFF_FIRST_MS = 500;
  const BACKOFF_MAX_MS = 30000;
  /** A connection that stayed open this long resets the backoff. */
  const STABLE_AFTER_MS = 5000;
  /** The fewest messages kept per conversation before old ones are dropped. */
  const MAX_KEPT = 500;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    latency: $('latency'),
    settings: $('settings'),
    connectForm: $('connect-form'),
    url: $('url'),
    token: $('token'),
    disconnect: $('disconnect'),
    identity: $('identity'),
    rooms: $('rooms'),
    directs: $('directs'),
    joinForm: $('join-form'),
    joinRoom: $('join-room'),
    title: $('conversation-title'),
    leave: $('leave'),
    older: $('load-older'),
    log: $('log'),
    sendForm: $('send-form'),
    text: $('text'),
    whisperTo: $('whisper-to'),
    whisper: $('whisper'),
    reloadHint: $('reload-hint'),
    reload: $('reload'),
  };

  const params = new URLSearchParams(location.search);
  const pingSeconds = Math.max(5, Number(params.get('ping')) || DEFAULT_PING_SECONDS);

  /**
   * Conversations by key: `#room` for a room, `@connectionId` for direct messages.
   * Each holds its items (messages and notices) in order, the message ids it has seen, a count
   * of unread ones, and (rooms) whether the server has older messages than those shown.
   */
  const conversations = new Map();
  const state = {
    socket: null,
    /** True while the user wants to be connected: a drop then schedules a reconnect. */
    wanted: false,
    attempt: 0,
    reconnectTimer: 0,
    pingTimer: 0,
    openedAt: 0,
    connectionId: '',
    user: null,
    /** Every connection id this page has had: its messages are ours after a reconnect too. */
    ownConnections: new Set(),
    /** Rooms this client means to be in; rejoined after a reconnect. */
    rooms: new Set([LOBBY]),
    active: '#' + LOBBY,
    /** Users seen per connection id, to name direct conversations. */
    names: new Map(),
    /** Requests of this connection awaiting their reply, by `ref`. */
    requests: new Map(),
    nextRef: 0,
    /** The notice that counts the latest rate-limit errors. */
    rateNotice: null,
  };

  // ---- connection ----

  function defaultUrl() {
    if (location.protocol === 'http:' || location.protocol === 'https:') {
      // Served by the local gateway: its WebSocket endpoint is on the same host and port.
      return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/';
    }
    return 'ws://127.0.0.1:3001/dev';
  }

  /** The URL to open: the endpoint with `token` in the query string when there is one. */
  function socketUrl() {
    const url = new URL(ui.url.value.trim());
    const token = ui.token.value.trim();
    if (token) url.searchParams.set('token', token);
    else url.searchParams.delete('token');
    return url.toString();
  }

  function connect() {
    clearTimeout(state.reconnectTimer);
    let url;
    try {
      url = socketUrl();
    } catch {
      setStatus('error', 'Not a valid URL');
      notice('error', 'The WebSocket URL is not valid: use ws://HOST:PORT/STAGE or wss://…');
      state.wanted = false;
      return;
    }
    if (!/^wss?:$/.test(new URL(url).protocol)) {
      setStatus('error', 'Not a WebSocket URL');
      notice('error', 'The URL must start with ws:// or wss://');
      state.wanted = false;
      return;
    }
    closeSocket();
    state.wanted = true;
    setStatus('connecting', state.attempt ? `Reconnecting (attempt ${state.attempt})…` : 'Connecting…');
    let socket;
    try {
      socket = new WebSocket(url);
    } catch (error) {
      // Thrown only for what retrying cannot fix (e.g. ws:// from an https:// page).
      setStatus('error', 'Cannot connect');
      notice('error', `Cannot open the WebSocket: ${error.message}`);
      state.wanted = false;
      return;
    }
    state.socket = socket;
    socket.addEventListener('open', () => onOpen(socket));
    socket.addEventListener('message', (event) => onFrame(socket, event));
    socket.addEventListener('close', (event) => onClose(socket, event));
  }

  function closeSocket() {
    const socket = state.socket;
    state.socket = null;
    stopPing();
    abandonRequests();
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000, 'client closed');
  }

  function disconnect() {
    state.wanted = false;
    state.attempt = 0;
    clearTimeout(state.reconnectTimer);
    closeSocket();
    setIdentity('', null);
    setStatus('closed', 'Disconnected');
  }

  function onOpen(socket) {
    if (socket !== state.socket) return;
    state.openedAt = Date.now();
    setStatus('open', 'Connected');
    if (state.attempt > 0) notice('info', 'Reconnected.');
    // A new connection is in the lobby only: join the other rooms again. Each room catches up
    // once it is joined (the lobby at once): what was sent while the page was away comes
    // through `history` with `after`.
    for (const room of state.rooms) {
      if (room === LOBBY) requestRoomHistory(LOBBY);
      else joinRoom(room, { rejoin: true });
    }
    send({ action: 'whoami' });
    startPing();
  }

  function onClose(socket, event) {
    if (socket !== state.socket) return;
    state.socket = null;
    stopPing();
    abandonRequests();
    setIdentity('', null);
    const opened = state.openedAt > 0;
    const stable = opened && Date.now() - state.openedAt >= STABLE_AFTER_MS;
    state.openedAt = 0;
    if (stable) state.attempt = 0;
    if (!state.wanted) return;
    if (opened) {
      notice('error', `Connection closed: ${describeClose(event)}.`);
    } else if (state.attempt === 0) {
      // The browser hides the HTTP status of a refused upgrade: name the likely causes.
      notice('error', 'Could not connect: the server is unreachable or refused the connection '
        + '(a missing, expired or invalid token is refused with 401 or 403).');
    }
    scheduleReconnect();
  }

  /**
   * The connection is gone: its replies will never come. Messages still waiting for their
   * confirmation are marked not confirmed; they are never sent again on their own (the server
   * may have stored them, and a resend could show them twice).
   */
  function abandonRequests() {
    for (const request of state.requests.values()) {
      const item = request.item;
      if (!item || item.state !== 'pending') continue;
      if (item.message.id) {
        // Its copy came back from the room: the server has it, only the reply was lost.
        setItemState(item, 'sent');
      } else {
        item.unconfirmed = true;
        setItemState(item, 'failed', 'Not confirmed: the connection dropped before the server '
          + 'answered. It may or may not have been delivered, and was not sent again.');
      }
    }
    state.requests.clear();
    for (const conversation of conversations.values()) conversation.loadingOlder = false;
    renderOlderButton();
  }

  function describeClose(event) {
    const meanings = {
      1001: 'the server went away (idle timeout, maximum duration or shutdown)',
      1003: 'the server does not accept binary frames',
      1006: 'the connection dropped',
      1009: 'the message was too big',
      1011: 'server error',
    };
    const details = `code ${event.code}${event.reason ? `, "${event.reason}"` : ''}`;
    return meanings[event.code] ? `${meanings[event.code]} (${details})` : details;
  }

  function scheduleReconnect() {
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** state.attempt);
    // Jitter spreads the reconnects of many clients dropped at once.
    const delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
    state.attempt += 1;
    const seconds = delay / 1000;
    setStatus('reconnecting', `Disconnected, reconnecting in ${seconds.toFixed(seconds < 10 ? 1 : 0)} s`);
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  function startPing() {
    stopPing();
    state.pingTimer = setInterval(() => send({ action: 'ping' }, {}, { quiet: true }), pingSeconds * 1000);
  }

  function stopPing() {
    clearInterval(state.pingTimer);
    state.pingTimer = 0;
  }

  /**
   * Sends a request with a fresh `ref`, remembering `context` until its reply or error (which
   * echo the ref) arrives. Returns the ref; '' (with a notice) when there is no open connection.
   */
  function send(request, context = {}, { quiet = false } = {}) {
    const socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      if (!quiet) notice('error', 'Not connected: the request was not sent.');
      return '';
    }
    state.nextRef += 1;
    const ref = `r${state.nextRef}`;
    state.requests.set(ref, { ...context, action: request.action, sentAt: performance.now() });
    socket.send(JSON.stringify({ ...request, ref }));
    return ref;
  }

  /** The request a reply or an error answers (and forgets it), or null. */
  function takeRequest(frame) {
    if (typeof frame.ref !== 'string') return null;
    const request = state.requests.get(frame.ref) || null;
    state.requests.delete(frame.ref);
    return request;
  }

  function joinRoom(room, { rejoin = false, tries = 0 } = {}) {
    return send({ action: 'join', room }, { room, rejoin, tries });
  }

  /** A room's history: the catch-up after a reconnect when messages were seen, else the latest page. */
  function requestRoomHistory(room) {
    const conversation = conversations.get('#' + room);
    const after = conversation ? resumePoint(conversation) : '';
    if (after) {
      send({ action: 'history', room, after, limit: RESUME_PAGE_LIMIT }, { kind: 'resume', room, pages: 1 });
    } else {
      requestLatest(room);
    }
  }

  function requestLatest(room) {
    send({ action: 'history', room, limit: HISTORY_LIMIT }, { kind: 'latest', room });
  }

  /**
   * Where to catch up from: the newest message seen that is at least RESUME_SLACK_MS older than
   * the newest one seen, or else the oldest one seen; '' when none was seen.
   */
  function resumePoint(conversation) {
    const seen = [];
    for (const item of conversation.items) {
      if (item.kind !== 'message' || !item.message.id) continue;
      const time = Date.parse(item.message.sentAt);
      if (!Number.isNaN(time)) seen.push({ id: item.message.id, time });
    }
    if (seen.length === 0) return '';
    const newest = Math.max(...seen.map((m) => m.time));
    let point = null;
    for (const message of seen) {
      if (message.time <= newest - RESUME_SLACK_MS && (!point || message.time > point.time)) point = message;
    }
    if (!point) {
      for (const message of seen) if (!point || message.time < point.time) point = message;
    }
    return point.id;
  }

  // ---- frames from the server ----

  function onFrame(socket, event) {
    if (socket !== state.socket) return;
    if (typeof event.data !== 'string') {
      notice('error', 'Received a binary frame; this client only understands JSON text.');
      return;
    }
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      notice('error', `Received a frame that is not JSON: ${truncate(event.data, 200)}`);
      return;
    }
    if (!frame || typeof frame !== 'object') {
      notice('error', `Received an unexpected frame: ${truncate(event.data, 200)}`);
      return;
    }
    switch (frame.type) {
      case 'message': onMessage(frame); break;
      case 'sent': onSent(frame); break;
      case 'joined': onJoined(frame); break;
      case 'left': onLeft(frame); break;
      case 'history': onHistory(frame); break;
      case 'identity': onIdentity(frame); break;
      case 'pong': onPong(frame); break;
      case 'error': onError(frame); break;
      case undefined:
        // API Gateway's own frames have no type: {"message": "Forbidden" | "Internal server error", ...}.
        if (typeof frame.message === 'string') {
          notice('error', `Gateway: ${frame.message}${requestRef(frame)}`);
          break;
        }
      // falls through
      default:
        notice('info', `Unknown frame: ${truncate(event.data, 200)}`);
    }
  }

  function onMessage(message) {
    if (message.user && message.from) state.names.set(message.from, message.user);
    const key = message.direct ? '@' + message.from : '#' + (message.room || LOBBY);
    const conversation = ensureConversation(key);
    if (message.id && conversation.ids.has(message.id)) return;
    // The room's copy of our own message, ahead of its `sent`: it becomes the pending item.
    if (!message.direct && adoptCopy(conversation, message)) return;
    addItem(key, { kind: 'message', message });
  }

  /** Gives a pending item of ours the copy the room sent back; true when one took it. */
  function adoptCopy(conversation, message) {
    if (!message.id || !state.connectionId || message.from !== state.connectionId) return false;
    const item = conversation.items.find((candidate) => candidate.state === 'pending' && !candidate.to
      && !candidate.message.id && candidate.message.text === message.text);
    if (!item) return false;
    item.message = { ...message };
    conversation.ids.add(message.id);
    renderItemAgain(item);
    return true;
  }

  /** `sent`: the server stored a message (and, for a room, fanned it out) under this id. */
  function onSent(frame) {
    const request = takeRequest(frame);
    if (!request || !request.item) return;
    let item = request.item;
    const conversation = conversations.get(item.key);
    if (!conversation || typeof frame.id !== 'string' || !frame.id) {
      setItemState(item, 'sent');
      return;
    }
    if (item.message.id !== frame.id) {
      const holder = conversation.items.find((other) => other !== item && other.kind === 'message'
        && other.message.id === frame.id);
      if (holder && holder.state === 'pending' && state.requests.has(holder.ref)) {
        // Two pending items with the same text each took the other's copy: swap their requests.
        state.requests.get(holder.ref).item = item;
        [item.ref, holder.ref] = [holder.ref, item.ref];
        item = holder;
      } else if (holder) {
        // The copy arrived first and was shown on its own: it replaces the pending item.
        if (item.message.id) {
          delete item.state;
          renderItemAgain(item);
        } else {
          removeItem(conversation, item);
        }
        holder.mine = true;
        holder.ref = frame.ref;
        item = holder;
      }
    }
    item.message.id = frame.id;
    if (typeof frame.sentAt === 'string') item.message.sentAt = frame.sentAt;
    conversation.ids.add(frame.id);
    setItemState(item, 'sent');
  }

  function onJoined(frame) {
    takeRequest(frame);
    const room = frame.room;
    if (typeof room !== 'string') return;
    const fresh = !state.rooms.has(room);
    state.rooms.add(room);
    ensureConversation('#' + room);
    if (fresh) setActive('#' + room);
    requestRoomHistory(room);
    renderConversations();
  }

  function onLeft(frame) {
    takeRequest(frame);
    const room = frame.room;
    state.rooms.delete(room);
    const key = '#' + room;
    conversations.delete(key);
    if (state.active === key) setActive('#' + (state.rooms.has(LOBBY) ? LOBBY : [...state.rooms][0] || LOBBY));
    renderConversations();
    notice('info', `You left #${room}.`);
  }

  function onHistory(frame) {
    const request = takeRequest(frame) || { kind: 'latest' };
    const room = typeof frame.room === 'string' ? frame.room : request.room;
    if (!room) return;
    const key = '#' + room;
    // A reply for a room left meanwhile is of no use.
    if (!conversations.has(key) && !state.rooms.has(room)) return;
    const conversation = ensureConversation(key);
    const messages = Array.isArray(frame.messages) ? frame.messages.filter((m) => m && typeof m === 'object') : [];
    for (const message of messages) {
      if (message.user && message.from) state.names.set(message.from, message.user);
    }
    mergeMessages(key, messages, { keepScroll: request.kind === 'older' });
    if (request.kind === 'resume') {
      const last = messages[messages.length - 1];
      if (frame.more === true && last && last.id) {
        if (request.pages >= RESUME_MAX_PAGES) {
          notice('info', `Many messages arrived in #${room} meanwhile: showing the latest (older ones may be missing).`);
          requestLatest(room);
        } else {
          send({ action: 'history', room, after: last.id, limit: RESUME_PAGE_LIMIT },
            { kind: 'resume', room, pages: request.pages + 1 });
        }
      }
      return;
    }
    // The latest page, or an older one: whether the server has still older messages.
    conversation.more = frame.more === true;
    conversation.loadingOlder = false;
    renderOlderButton();
  }

  function onIdentity(frame) {
    takeRequest(frame);
    setIdentity(frame.connectionId || '', frame.user ?? null);
    if (frame.connectionId) state.ownConnections.add(frame.connectionId);
    // The server's view wins: rooms it says we are in appear here, with their history.
    for (const room of frame.rooms || []) {
      if (!state.rooms.has(room)) {
        state.rooms.add(room);
        ensureConversation('#' + room);
        requestRoomHistory(room);
      }
    }
    renderConversations();
    // Which messages are ours is known only now.
    renderLog();
  }

  function onPong(frame) {
    const request = takeRequest(frame);
    if (!request) return;
    ui.latency.textContent = `ping ${Math.round(performance.now() - request.sentAt)} ms`;
  }

  function onError(frame) {
    const request = takeRequest(frame);
    const code = typeof frame.code === 'string' && frame.code ? frame.code : 'error';
    let text = describeError(code, frame) + requestRef(frame);
    if (request && request.action === 'join') {
      if (code === 'rate_limited' && request.tries < JOIN_RETRIES) {
        // Joining twice is harmless: ask again once the server allows it, without a word.
        const socket = state.socket;
        const delay = retryAfter(frame) + Math.round(Math.random() * 200);
        setTimeout(() => {
          if (state.socket === socket) joinRoom(request.room, { rejoin: request.rejoin, tries: request.tries + 1 });
        }, delay);
        return;
      }
      if (request.rejoin) {
        // Not a member on this connection: stop asking for it on every reconnect.
        state.rooms.delete(request.room);
        text = `Could not rejoin #${request.room}: ${text}`;
      }
    }
    if (request && request.kind === 'resume') {
      // The resume point is not usable: fall back to the latest page.
      requestLatest(request.room);
    }
    if (request && request.kind === 'older') {
      const conversation = conversations.get('#' + request.room);
      if (conversation) conversation.loadingOlder = false;
      renderOlderButton();
    }
    if (request && request.item) {
      // The notice tells how long to wait; the item only why it was not sent.
      setItemState(request.item, 'failed', code === 'rate_limited'
        ? 'too many messages at once; wait a moment, then send it again.' : text);
      // The item says it; a notice too only where it is not seen, and for the rate limit.
      if (code !== 'rate_limited' && request.item.key === state.active) return;
    }
    if (code === 'rate_limited') rateNotice(text);
    else notice('error', text, code);
  }

  /** What an error means, in words; the raw code only for the codes without their own words. */
  function describeError(code, frame) {
    const message = typeof frame.message === 'string' && frame.message ? frame.message : 'the request failed';
    if (code === 'rate_limited') {
      const wait = Number(frame.retryAfterMs) > 0 ? `try again in ${seconds(Number(frame.retryAfterMs))}` : 'try again in a moment';
      return `Slow down: too many messages at once; ${wait}.`;
    }
    if (code === 'limit_exceeded') return `Room limit reached: ${message}`;
    return `${code}: ${message}`;
  }

  function retryAfter(frame) {
    const ms = Number(frame.retryAfterMs);
    return Number.isFinite(ms) && ms > 0 ? Math.min(ms, 60_000) : 1000;
  }

  function seconds(ms) {
    const s = ms / 1000;
    return s < 10 ? `${(Math.ceil(s * 10) / 10).toFixed(1)} s` : `${Math.ceil(s)} s`;
  }

  function requestRef(frame) {
    return frame.requestId ? ` (request ${frame.requestId})` : '';
  }

  /** One notice for a run of rate-limit errors, counting them, rather than one each. */
  function rateNotice(text) {
    const last = state.rateNotice;
    const conversation = conversations.get(state.active);
    if (last && last.key === state.active && Date.now() - last.since < RATE_NOTICE_MS
        && conversation && conversation.items.includes(last.item)) {
      last.item.count += 1;
      last.item.text = `${text} ${last.item.count} requests were refused.`;
      renderItemAgain(last.item);
      return;
    }
    const item = notice('error', text, 'rate_limited');
    item.count = 1;
    state.rateNotice = { key: state.active, item, since: Date.now() };
  }

  // ---- conversations ----

  function ensureConversation(key) {
    if (!conversations.has(key)) {
      conversations.set(key, { items: [], ids: new Set(), unread: 0, more: false, loadingOlder: false });
      renderConversations();
    }
    return conversations.get(key);
  }

  function addItem(key, item) {
    const conversation = ensureConversation(key);
    if (item.kind === 'message' && item.message.id) {
      if (conversation.ids.has(item.message.id)) return;
      conversation.ids.add(item.message.id);
    }
    item.key = key;
    conversation.items.push(item);
    if (conversation.items.length > MAX_KEPT) conversation.items.splice(0, conversation.items.length - MAX_KEPT);
    if (key === state.active) {
      appendToLog(item);
    } else if (item.kind === 'message') {
      conversation.unread += 1;
      renderConversations();
    }
  }

  function removeItem(conversation, item) {
    const index = conversation.items.indexOf(item);
    if (index >= 0) conversation.items.splice(index, 1);
    if (item.el) item.el.remove();
  }

  /** Adds history: messages not seen yet, placed by time among the ones already shown. */
  function mergeMessages(key, messages, { keepScroll = false } = {}) {
    const conversation = ensureConversation(key);
    let added = false;
    for (const message of messages) {
      if (!message.id || conversation.ids.has(message.id)) continue;
      conversation.ids.add(message.id);
      // Ours, sent before a drop and marked not confirmed: the server did store it.
      const unconfirmed = state.ownConnections.has(message.from) && conversation.items.find((item) => item.unconfirmed
        && item.state === 'failed' && !item.to && item.message.text === message.text);
      if (unconfirmed) {
        unconfirmed.unconfirmed = false;
        unconfirmed.message = { ...message };
        setItemState(unconfirmed, 'sent');
        continue;
      }
      conversation.items.push({ kind: 'message', key, message, history: true });
      added = true;
    }
    if (!added) return;
    const at = (item) => (item.kind === 'message' ? item.message.sentAt || '' : item.at);
    // A stable sort keeps notices where they were relative to messages of the same instant.
    conversation.items.sort((a, b) => (at(a) < at(b) ? -1 : at(a) > at(b) ? 1 : 0));
    if (key === state.active) renderLog({ keepScroll });
  }

  /** A line from the client itself (errors, state changes), shown in the active conversation. */
  function notice(level, text, code) {
    const item = { kind: 'notice', level, text, code, at: new Date().toISOString() };
    addItem(state.active, item);
    return item;
  }

  /** Our message's state: pending (sent, not confirmed yet), sent (confirmed), failed (with why). */
  function setItemState(item, itemState, error = '') {
    item.state = itemState;
    item.error = error;
    renderItemAgain(item);
  }

  function setActive(key) {
    state.active = key;
    const conversation = ensureConversation(key);
    conversation.unread = 0;
    const direct = key.startsWith('@');
    ui.title.textContent = direct ? `Direct: ${peerName(key.slice(1))}` : key;
    ui.leave.hidden = direct;
    ui.text.placeholder = direct
      ? `Whisper to ${peerName(key.slice(1))} (Enter sends)`
      : `Message ${key} (Enter sends, Shift+Enter for a new line)`;
    renderConversations();
    renderLog();
    renderOlderButton();
  }

  function peerName(connectionId) {
    const user = state.names.get(connectionId);
    return user ? `${user} (${connectionId})` : connectionId;
  }

  /** The oldest message of a conversation that the server knows (it has an id). */
  function oldestId(conversation) {
    let oldest = null;
    for (const item of conversation.items) {
      if (item.kind !== 'message' || !item.message.id || !item.message.sentAt) continue;
      if (!oldest || item.message.sentAt < oldest.sentAt) oldest = item.message;
    }
    return oldest ? oldest.id : '';
  }

  function renderOlderButton() {
    const conversation = conversations.get(state.active);
    const show = state.active.startsWith('#') && conversation && conversation.more && oldestId(conversation);
    ui.older.hidden = !show;
    ui.older.disabled = Boolean(conversation && conversation.loadingOlder);
    ui.older.textContent = conversation && conversation.loadingOlder ? 'Loading…' : 'Load older messages';
  }

  function loadOlder() {
    const key = state.active;
    const conversation = conversations.get(key);
    if (!key.startsWith('#') || !conversation || conversation.loadingOlder) return;
    const before = oldestId(conversation);
    if (!before) return;
    const room = key.slice(1);
    if (send({ action: 'history', room, before, limit: HISTORY_LIMIT }, { kind: 'older', room })) {
      conversation.loadingOlder = true;
      renderOlderButton();
    }
  }

  function renderConversations() {
    const roomItems = [];
    const directItems = [];
    for (const [key, conversation] of conversations) {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'conversation';
      button.dataset.key = key;
      if (key === state.active) button.setAttribute('aria-current', 'true');
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = key.startsWith('@') ? peerName(key.slice(1)) : key;
      button.append(name);
      if (conversation.unread > 0) {
        const badge = document.createElement('span');
        badge.className = 'badge';
        badge.textContent = String(conversation.unread);
        badge.setAttribute('aria-label', `${conversation.unread} unread`);
        button.append(badge);
      }
      button.addEventListener('click', () => setActive(key));
      li.append(button);
      (key.startsWith('@') ? directItems : roomItems).push(li);
    }
    ui.rooms.replaceChildren(...roomItems);
    ui.directs.replaceChildren(...directItems);
  }

  function renderLog({ keepScroll = false } = {}) {
    const conversation = conversations.get(state.active);
    // Older messages added above: the ones being read stay where they are.
    const fromBottom = ui.log.scrollHeight - ui.log.scrollTop;
    ui.log.replaceChildren(...(conversation ? conversation.items.map((item) => renderItem(item)) : []));
    ui.log.scrollTop = keepScroll ? ui.log.scrollHeight - fromBottom : ui.log.scrollHeight;
  }

  function appendToLog(item) {
    const nearBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80;
    ui.log.append(renderItem(item));
    while (ui.log.childElementCount > MAX_KEPT) ui.log.firstElementChild.remove();
    if (nearBottom || item.kind === 'notice' || item.mine) ui.log.scrollTop = ui.log.scrollHeight;
  }

  /** Redraws an item where it is shown (its element is kept), if it is shown. */
  function renderItemAgain(item) {
    if (item.el && item.el.isConnected) renderItem(item, item.el);
  }

  function renderItem(item, li = document.createElement('li')) {
    item.el = li;
    li.replaceChildren();
    for (const name of Object.keys(li.dataset)) delete li.dataset[name];
    if (item.kind === 'notice') {
      li.className = `notice ${item.level}`;
      if (item.code) li.dataset.code = item.code;
      li.append(timeElement(item.at));
      const text = document.createElement('span');
      text.className = 'text';
      text.textContent = item.text;
      li.append(text);
      return li;
    }
    const message = item.message;
    // After a reconnect the connection id is new: the user (from the token) still says it is ours.
    const mine = item.mine || (message.from && message.from === state.connectionId)
      || (message.user != null && message.user === state.user);
    li.className = 'message' + (mine ? ' mine' : '') + (message.direct ? ' direct' : '')
      + (item.history ? ' from-history' : '');
    if (message.id) li.dataset.id = message.id;
    if (item.state) li.dataset.state = item.state;
    li.append(timeElement(message.sentAt));
    const sender = document.createElement('button');
    sender.type = 'button';
    sender.className = 'sender';
    sender.textContent = item.to ? `you → ${peerName(item.to)}` : (message.user || shortId(message.from));
    sender.title = item.to
      ? `Whisper to connection ${item.to}`
      : `connection ${message.from}${mine ? ' (you)' : ' — click to whisper'}`;
    if (!mine && message.from) sender.addEventListener('click', () => openDirect(message.from));
    else sender.disabled = true;
    li.append(sender);
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = String(message.text ?? '');
    li.append(text);
    if (item.state) li.append(stateElement(item));
    return li;
  }

  /** How far our message got: sending…, a check mark once confirmed, or why it failed. */
  function stateElement(item) {
    const span = document.createElement('span');
    span.className = `state ${item.state}`;
    if (item.state === 'pending') {
      span.textContent = 'sending…';
      span.title = 'Sent; waiting for the server to confirm it';
    } else if (item.state === 'sent') {
      span.textContent = '✓';
      span.title = item.to ? 'Delivered to the connection' : 'Stored and sent to the room';
      span.setAttribute('aria-label', 'sent');
    } else {
      const reason = document.createElement('span');
      reason.className = 'reason';
      reason.textContent = item.unconfirmed ? item.error : `Not sent: ${item.error}`;
      const retry = document.createElement('button');
      retry.type = 'button';
      retry.className = 'secondary small retry';
      retry.textContent = 'Send again';
      retry.title = item.unconfirmed
        ? 'It may have arrived already: sending it again can show it twice'
        : 'Send this message again';
      retry.addEventListener('click', () => resend(item));
      span.append(reason, ' ', retry);
    }
    return span;
  }

  function timeElement(iso) {
    const time = document.createElement('time');
    const date = iso ? new Date(iso) : null;
    if (date && !Number.isNaN(date.getTime())) {
      time.dateTime = date.toISOString();
      time.textContent = date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
      time.title = date.toLocaleString();
    }
    return time;
  }

  function shortId(id) {
    return id ? String(id) : 'unknown';
  }

  function openDirect(connectionId) {
    ensureConversation('@' + connectionId);
    setActive('@' + connectionId);
    ui.whisperTo.value = connectionId;
    ui.text.focus();
  }

  function setIdentity(connectionId, user) {
    state.connectionId = connectionId;
    state.user = user;
    ui.identity.dataset.connectionId = connectionId;
    ui.identity.replaceChildren();
    if (!connectionId) {
      ui.identity.textContent = state.wanted ? 'Connecting…' : 'Not connected';
      return;
    }
    const name = document.createElement('strong');
    name.className = 'user';
    name.textContent = user ?? 'anonymous';
    const id = document.createElement('code');
    id.className = 'connection-id';
    id.textContent = connectionId;
    id.title = 'Your connection id: others whisper to you with it';
    ui.identity.append(name, document.createElement('br'), 'connection ', id);
  }

  function setStatus(kind, text) {
    ui.status.dataset.state = kind;
    ui.status.textContent = text;
    if (kind !== 'open') ui.latency.textContent = '';
  }

  function truncate(text, max) {
    return text.length > max ? `${text.slice(0, max)}…` : text;
  }

  // ---- user actions ----

  function checkedText() {
    const text = ui.text.value;
    if (!text.trim()) return null;
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > MAX_TEXT_BYTES) {
      notice('error', `The message is ${bytes} bytes; at most ${MAX_TEXT_BYTES} can be sent.`);
      return null;
    }
    return text;
  }

  function sendText() {
    const text = checkedText();
    if (text === null) return;
    if (state.active.startsWith('@')) {
      whisper(state.active.slice(1), text);
      return;
    }
    const room = state.active.slice(1);
    const item = ownItem(text, { room });
    if (!sendItem(item)) return;
    ui.text.value = '';
    addItem('#' + room, item);
  }

  function whisper(to, text) {
    const item = ownItem(text, { to });
    if (!sendItem(item)) return;
    ui.text.value = '';
    // The server sends the sender no copy: show what was sent in the conversation with the peer.
    const key = '@' + to;
    ensureConversation(key);
    if (state.active !== key) setActive(key);
    addItem(key, item);
  }

  /** Our message, shown at once as pending until the server's `sent` (or error) for its ref. */
  function ownItem(text, { room, to }) {
    return {
      kind: 'message',
      mine: true,
      state: 'pending',
      to,
      message: to
        ? { text, from: state.connectionId, user: state.user, sentAt: new Date().toISOString(), direct: true }
        : { text, room, from: state.connectionId, user: state.user, sentAt: new Date().toISOString() },
    };
  }

  function sendItem(item) {
    const request = item.to
      ? { action: 'whisper', to: item.to, text: item.message.text }
      : { action: 'sendmessage', room: item.message.room, text: item.message.text };
    const ref = send(request, { item });
    if (ref) item.ref = ref;
    return ref;
  }

  /** "Send again" on a failed message: only ever by the user's hand. */
  function resend(item) {
    if (item.state !== 'failed') return;
    item.message.sentAt = new Date().toISOString();
    item.message.from = state.connectionId;
    if (!sendItem(item)) return;
    item.unconfirmed = false;
    setItemState(item, 'pending');
  }

  ui.connectForm.addEventListener('submit', (event) => {
    event.preventDefault();
    state.attempt = 0;
    connect();
  });
  ui.disconnect.addEventListener('click', disconnect);

  ui.joinForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const room = ui.joinRoom.value.trim();
    if (!room) return;
    // The server checks the name and answers with an error frame: it is the one authority.
    if (joinRoom(room)) ui.joinRoom.value = '';
    if (ROOM_NAME.test(room) && state.rooms.has(room)) setActive('#' + room);
  });

  ui.leave.addEventListener('click', () => {
    if (state.active.startsWith('#')) {
      const room = state.active.slice(1);
      send({ action: 'leave', room }, { room });
    }
  });

  ui.older.addEventListener('click', loadOlder);

  ui.sendForm.addEventListener('submit', (event) => {
    event.preventDefault();
    sendText();
  });
  ui.text.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendText();
    }
  });
  ui.whisper.addEventListener('click', () => {
    const to = ui.whisperTo.value.trim();
    if (!to) {
      notice('error', 'Whisper to whom? Enter a connection id (click a sender to fill it in).');
      ui.whisperTo.focus();
      return;
    }
    const text = checkedText();
    if (text !== null) whisper(to, text);
  });

  // Back online: do not wait for the backoff.
  window.addEventListener('online', () => {
    if (state.wanted && !state.socket) connect();
  });

  // Served over plain HTTP by the gateway it connects to (no ?url=): the local gateway, which
  // says when these files change under `make dev`. A hint, not a reload: the page holds a
  // connection and maybe a draft.
  if (location.protocol === 'http:' && !params.get('url') && typeof EventSource === 'function') {
    const changes = new EventSource('/_local/reload');
    changes.addEventListener('reload', () => { ui.reloadHint.hidden = false; });
  }
  ui.reload.addEventListener('click', () => location.reload());

  // ---- start ----
  ui.url.value = params.get('url') || defaultUrl();
  ui.token.value = params.get('token') || '';
  ensureConversation('#' + LOBBY);
  setActive('#' + LOBBY);
  connect();
})();
