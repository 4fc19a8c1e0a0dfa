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
    log: $('log'),
    sendForm: $('send-form'),
    text: $('text'),
    whisperTo: $('whisper-to'),
    whisper: $('whisper'),
  };

  const params = new URLSearchParams(location.search);
  const pingSeconds = Math.max(5, Number(params.get('ping')) || DEFAULT_PING_SECONDS);

  /**
   * Conversations by key: `#room` for a room, `@connectionId` for direct messages.
   * Each holds its items (messages and notices) in order, and a count of unread ones.
   */
  const conversations = new Map();
  const state = {
    socket: null,
    /** True while the user wants to be connected: a drop then schedules a reconnect. */
    wanted: false,
    attempt: 0,
    reconnectTimer: 0,
    pingTimer: 0,
    pingSentAt: 0,
    openedAt: 0,
    connectionId: '',
    user: null,
    /** Rooms this client means to be in; rejoined after a reconnect. */
    rooms: new Set([LOBBY]),
    active: '#' + LOBBY,
    /** Users seen per connection id, to name direct conversations. */
    names: new Map(),
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
    // A new connection is in the lobby only: join the other rooms again.
    for (const room of state.rooms) {
      if (room === LOBBY) requestHistory(LOBBY);
      else send({ action: 'join', room });
    }
    send({ action: 'whoami' });
    startPing();
  }

  function onClose(socket, event) {
    if (socket !== state.socket) return;
    state.socket = null;
    stopPing();
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
    state.pingTimer = setInterval(() => {
      state.pingSentAt = performance.now();
      send({ action: 'ping' });
    }, pingSeconds * 1000);
  }

  function stopPing() {
    clearInterval(state.pingTimer);
    state.pingTimer = 0;
  }

  /** Sends a request; false (with a notice) when there is no open connection. */
  function send(request) {
    const socket = state.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      notice('error', 'Not connected: the request was not sent.');
      return false;
    }
    socket.send(JSON.stringify(request));
    return true;
  }

  function requestHistory(room) {
    send({ action: 'history', room, limit: HISTORY_LIMIT });
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
      case 'joined': onJoined(frame.room); break;
      case 'left': onLeft(frame.room); break;
      case 'history': onHistory(frame); break;
      case 'identity': onIdentity(frame); break;
      case 'pong': onPong(); break;
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
    if (message.direct) {
      const key = '@' + message.from;
      ensureConversation(key);
      addItem(key, { kind: 'message', message });
    } else {
      const room = message.room || LOBBY;
      ensureConversation('#' + room);
      addItem('#' + room, { kind: 'message', message });
    }
  }

  function onJoined(room) {
    const fresh = !state.rooms.has(room);
    state.rooms.add(room);
    ensureConversation('#' + room);
    if (fresh) setActive('#' + room);
    requestHistory(room);
    renderConversations();
  }

  function onLeft(room) {
    state.rooms.delete(room);
    const key = '#' + room;
    conversations.delete(key);
    if (state.active === key) setActive('#' + (state.rooms.has(LOBBY) ? LOBBY : [...state.rooms][0] || LOBBY));
    renderConversations();
    notice('info', `You left #${room}.`);
  }

  function onHistory(frame) {
    const key = '#' + frame.room;
    ensureConversation(key);
    const messages = Array.isArray(frame.messages) ? frame.messages : [];
    for (const message of messages) {
      if (message.user && message.from) state.names.set(message.from, message.user);
    }
    mergeMessages(key, messages);
  }

  function onIdentity(frame) {
    setIdentity(frame.connectionId || '', frame.user ?? null);
    // The server's view wins: rooms it says we are in appear here, with their history.
    for (const room of frame.rooms || []) {
      if (!state.rooms.has(room)) {
        state.rooms.add(room);
        ensureConversation('#' + room);
        requestHistory(room);
      }
    }
    renderConversations();
    // Which messages are ours is known only now.
    renderLog();
  }

  function onPong() {
    if (!state.pingSentAt) return;
    const ms = Math.round(performance.now() - state.pingSentAt);
    state.pingSentAt = 0;
    ui.latency.textContent = `ping ${ms} ms`;
  }

  function onError(frame) {
    const code = frame.code || 'error';
    notice('error', `${code}: ${frame.message || 'the request failed'}${requestRef(frame)}`, code);
  }

  function requestRef(frame) {
    return frame.requestId ? ` (request ${frame.requestId})` : '';
  }

  // ---- conversations ----

  function ensureConversation(key) {
    if (!conversations.has(key)) {
      conversations.set(key, { items: [], ids: new Set(), unread: 0 });
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
    conversation.items.push(item);
    if (conversation.items.length > MAX_KEPT) conversation.items.splice(0, conversation.items.length - MAX_KEPT);
    if (key === state.active) {
      appendToLog(item);
    } else if (item.kind === 'message') {
      conversation.unread += 1;
      renderConversations();
    }
  }

  /** Adds history: messages not seen yet, placed by time among the ones already shown. */
  function mergeMessages(key, messages) {
    const conversation = ensureConversation(key);
    let added = false;
    for (const message of messages) {
      if (!message || !message.id || conversation.ids.has(message.id)) continue;
      conversation.ids.add(message.id);
      conversation.items.push({ kind: 'message', message, history: true });
      added = true;
    }
    if (!added) return;
    const at = (item) => (item.kind === 'message' ? item.message.sentAt || '' : item.at);
    // A stable sort keeps notices where they were relative to messages of the same instant.
    conversation.items.sort((a, b) => (at(a) < at(b) ? -1 : at(a) > at(b) ? 1 : 0));
    if (key === state.active) renderLog();
  }

  /** A line from the client itself (errors, state changes), shown in the active conversation. */
  function notice(level, text, code) {
    addItem(state.active, { kind: 'notice', level, text, code, at: new Date().toISOString() });
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
  }

  function peerName(connectionId) {
    const user = state.names.get(connectionId);
    return user ? `${user} (${connectionId})` : connectionId;
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

  function renderLog() {
    const conversation = conversations.get(state.active);
    ui.log.replaceChildren(...(conversation ? conversation.items.map(renderItem) : []));
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  function appendToLog(item) {
    const nearBottom = ui.log.scrollHeight - ui.log.scrollTop - ui.log.clientHeight < 80;
    ui.log.append(renderItem(item));
    while (ui.log.childElementCount > MAX_KEPT) ui.log.firstElementChild.remove();
    if (nearBottom || item.kind === 'notice' || item.mine) ui.log.scrollTop = ui.log.scrollHeight;
  }

  function renderItem(item) {
    const li = document.createElement('li');
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
    li.append(timeElement(message.sentAt));
    const sender = document.createElement('button');
    sender.type = 'button';
    sender.className = 'sender';
    sender.textContent = item.to ? `you → ${peerName(item.to)}` : (message.user || shortId(message.from));
    sender.title = item.to
      ? 'Whispers are not confirmed by the server: an error appears here if the target is gone'
      : `connection ${message.from}${mine ? ' (you)' : ' — click to whisper'}`;
    if (!mine && message.from) sender.addEventListener('click', () => openDirect(message.from));
    else sender.disabled = true;
    li.append(sender);
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = String(message.text ?? '');
    li.append(text);
    return li;
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
    if (send({ action: 'sendmessage', room: state.active.slice(1), text })) ui.text.value = '';
  }

  function whisper(to, text) {
    if (!send({ action: 'whisper', to, text })) return;
    ui.text.value = '';
    // The server sends the sender no copy: show what was sent in the conversation with the peer.
    const key = '@' + to;
    ensureConversation(key);
    if (state.active !== key) setActive(key);
    addItem(key, {
      kind: 'message',
      mine: true,
      to,
      message: { text, from: state.connectionId, user: state.user, sentAt: new Date().toISOString(), direct: true },
    });
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
    if (send({ action: 'join', room })) ui.joinRoom.value = '';
    if (ROOM_NAME.test(room) && state.rooms.has(room)) setActive('#' + room);
  });

  ui.leave.addEventListener('click', () => {
    if (state.active.startsWith('#')) send({ action: 'leave', room: state.active.slice(1) });
  });

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

  // ---- start ----
  ui.url.value = params.get('url') || defaultUrl();
  ui.token.value = params.get('token') || '';
  ensureConversation('#' + LOBBY);
  setActive('#' + LOBBY);
  connect();
})();
