// The web client in a real browser against the real local gateway (real handler binaries,
// DynamoDB Local): two users chat, see their messages go from pending to sent (acked by `ref`,
// never twice), whisper, see markup as text, see error frames, catch up on what was sent while
// a connection dropped by the gateway was away (`history` with `after`), see the rate limit and
// the rooms-per-connection limit readably. Run by `make web-test`; prints `N passed, N failed`.
//
// The gateway is started with `--env MAX_ROOMS_PER_CONNECTION=3` (on top of
// WEB_TEST_GATEWAY_ARGS), so that a fourth room (the lobby and the test room count) is refused
// with `limit_exceeded`.
//
// Environment:
//   WEB_TEST_CHROMIUM       the browser (default /usr/bin/chromium)
//   WEB_TEST_GATEWAY        the gateway binary (default target/debug/local-gateway)
//   WEB_TEST_TEMPLATE       the synthesized template (default cdk.out/Realtime-dev.template.json)
//   WEB_TEST_GATEWAY_ARGS   extra gateway flags, split on spaces
//   WEB_TEST_TOKEN_CMD      when the template has an authorizer: prints a token for {user}
//                           (default `make -s --no-print-directory token USER={user}`)
//   WEB_TEST_OUT            where the screenshots and the gateway log go (default test-output/web)

import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdirSync, readFileSync, createWriteStream, existsSync, cpSync, appendFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash, createHmac } from 'node:crypto';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WEB = join(ROOT, 'web');
const OUT = resolve(ROOT, process.env.WEB_TEST_OUT || 'test-output/web');
/** The copy of web/ the gateway serves and watches: the test edits it, never web/ itself. */
const SERVED_WEB = join(OUT, 'served-web');
const CHROMIUM = process.env.WEB_TEST_CHROMIUM || '/usr/bin/chromium';
const GATEWAY = resolve(ROOT, process.env.WEB_TEST_GATEWAY || 'target/debug/local-gateway');
const TEMPLATE = resolve(ROOT, process.env.WEB_TEST_TEMPLATE || 'cdk.out/Realtime-dev.template.json');
const STAGE = 'dev';
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run',
];
/** The whole run, setup and teardown included, stops after this. */
const SUITE_LIMIT_MS = 120_000;
const STEP_LIMIT_MS = 20_000;
const WAIT_MS = 10_000;
const ROOM = 'team';
/** The gateway's `--env` for the rooms-per-connection limit: the lobby, ROOM, one more. */
const MAX_ROOMS = 3;
/** Messages the flood step sends at once: more than the stage's burst of 20. */
const FLOOD = 40;
const SCRIPT_TEXT = '<script>window.__injected = 1</script><img src=x onerror="window.__injected = 2"><b>bold?</b>';

const started = Date.now();
const cleanups = [];
let gatewayLog = '';

// ---- a tiny sequential runner: after a failure the remaining steps are skipped ----
const results = { passed: 0, failed: 0, skipped: 0 };
let broken = false;

async function step(name, fn) {
  if (broken) {
    results.skipped += 1;
    console.log(`- skip ${name}`);
    return;
  }
  const t0 = Date.now();
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${STEP_LIMIT_MS} ms`)), STEP_LIMIT_MS);
      }),
    ]);
    results.passed += 1;
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (error) {
    results.failed += 1;
    broken = true;
    console.log(`FAIL ${name} (${Date.now() - t0} ms)\n     ${String(error.stack || error).split('\n').slice(0, 6).join('\n     ')}`);
  } finally {
    clearTimeout(timer);
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

// ---- the gateway ----

/** Starts the gateway on a free port; resolves with its ports once it prints its URLs. */
function startGateway() {
  return new Promise((resolveStart, rejectStart) => {
    const extra = (process.env.WEB_TEST_GATEWAY_ARGS || '').split(/\s+/).filter(Boolean);
    cpSync(WEB, SERVED_WEB, { recursive: true });
    // Watching the copy of web/ only (no Rust or stack sources: nothing is built).
    const args = ['--port', '0', '--stage', STAGE, '--template', TEMPLATE,
      '--bin-dir', dirname(GATEWAY), '--env', `MAX_ROOMS_PER_CONNECTION=${MAX_ROOMS}`,
      '--web-dir', SERVED_WEB, '--watch', '--watch-rust', '--watch-stack', ...extra];
    // Its own process group: a gateway that does not stop in time is killed with its children.
    const child = spawn(GATEWAY, args, {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DDB_LOCAL_TELEMETRY: '0', NO_COLOR: '1' },
    });
    const log = createWriteStream(join(OUT, 'gateway.log'));
    let stdout = '';
    const timer = setTimeout(() => rejectStart(new Error(`the gateway did not start within 40 s:\n${gatewayLog.slice(-2000)}`)), 40_000);
    const collect = (chunk) => {
      gatewayLog += chunk;
      if (gatewayLog.length > 200_000) gatewayLog = gatewayLog.slice(-100_000);
      log.write(chunk);
    };
    child.stdout.on('data', (chunk) => {
      collect(chunk);
      stdout += chunk;
      const match = /ws:\/\/127\.0\.0\.1:(\d+)\//.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolveStart({ child, port: Number(match[1]) });
      }
    });
    child.stderr.on('data', collect);
    child.on('error', (error) => { clearTimeout(timer); rejectStart(error); });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      log.end();
      rejectStart(new Error(`the gateway exited (${code ?? signal}) before it was ready:\n${gatewayLog.slice(-2000)}`));
    });
    cleanups.push(() => stopProcess(child, 'gateway', 15_000));
  });
}

/** SIGTERM, then SIGKILL to its whole group if it has not exited in time. */
async function stopProcess(child, name, graceMs) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const inTime = await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)]);
  if (!inTime) {
    console.log(`${name} did not stop within ${graceMs} ms: killing its process group ${child.pid}`);
    try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
    await Promise.race([exited, sleep(2000)]);
  }
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Tokens for the users when the template puts an authorizer on $connect; none otherwise. */
function tokenFor(user) {
  const template = readFileSync(TEMPLATE, 'utf8');
  if (!template.includes('"AWS::ApiGatewayV2::Authorizer"')) return null;
  const command = (process.env.WEB_TEST_TOKEN_CMD || 'make -s --no-print-directory token USER={user}')
    .replaceAll('{user}', user);
  const output = execFileSync('bash', ['-c', command], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  const token = /eyJ[\w-]*\.[\w-]+\.[\w-]+/.exec(output);
  assert(token, `\`${command}\` printed no token:\n${output}`);
  return token[0];
}

// ---- the page, served from web/ (as the gateway serves it, or by this test) ----

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

function serveWeb() {
  const server = createServer((request, response) => {
    const path = new URL(request.url, 'http://x').pathname;
    const name = path === '/' ? 'index.html' : path.slice(1);
    const type = TYPES[name.slice(name.lastIndexOf('.'))];
    // Only the files at the top of web/: no directory walks.
    if (!type || name.includes('/') || !existsSync(join(WEB, name))) {
      response.writeHead(404).end('not found');
      return;
    }
    response.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' });
    response.end(readFileSync(join(WEB, name)));
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => {
    cleanups.push(() => new Promise((done) => { server.closeAllConnections(); server.close(done); }));
    r(server.address().port);
  }));
}

/** Whether the gateway serves the client itself at `/`. */
async function gatewayServesWeb(port) {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(3000) });
    return response.ok && (await response.text()).includes('<script src="app.js"');
  } catch {
    return false;
  }
}

// ---- helpers on a page ----

async function openChat(browser, name, pageUrl, problems) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 }, colorScheme: 'light' });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('pageerror', (error) => problems.push(`${name}: page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`${name}: console error: ${message.text()}`);
  });
  await page.goto(pageUrl);
  return page;
}

async function connectionId(page) {
  await page.waitForSelector('#status[data-state="open"]');
  const handle = await page.waitForFunction(() => document.querySelector('#identity').dataset.connectionId || null);
  return handle.jsonValue();
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** The message in the log whose text is exactly `text`. */
function messageIn(page, text) {
  return page.locator('#log li.message').filter({ has: page.locator('.text', { hasText: text }) }).last();
}

/** Every `li.message` of the log whose text is exactly `text`, as {id, state, classes}. */
function messagesWithText(page, text) {
  return page.$$eval('#log li.message', (items, wanted) => items
    .filter((li) => li.querySelector('.text')?.textContent === wanted)
    .map((li) => ({ id: li.dataset.id || '', state: li.dataset.state || '', classes: li.className })), text);
}

/**
 * Records, from now on, every state the log shows for the message with text `text`, and the
 * most items with that text it ever showed at once: read them with `readWatch`.
 */
async function watchMessage(page, text) {
  await page.evaluate((wanted) => {
    const log = document.querySelector('#log');
    const watch = { states: [], most: 0 };
    window.__watch = watch;
    const look = () => {
      const items = [...log.querySelectorAll('li.message')].filter((li) => li.querySelector('.text')?.textContent === wanted);
      watch.most = Math.max(watch.most, items.length);
      for (const li of items) {
        const seen = li.dataset.state || '';
        if (watch.states[watch.states.length - 1] !== seen) watch.states.push(seen);
      }
    };
    new MutationObserver(look).observe(log, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-state', 'data-id'] });
  }, text);
}

function readWatch(page) {
  return page.evaluate(() => window.__watch);
}

async function joinRoom(page, room) {
  await page.fill('#join-room', room);
  await page.press('#join-room', 'Enter');
  await page.waitForSelector(`#rooms button[data-key="#${room}"][aria-current="true"]`);
}

// ---- the run ----

async function main() {
  mkdirSync(OUT, { recursive: true });
  for (const [what, path] of [['the browser', CHROMIUM], ['the gateway', GATEWAY], ['the template', TEMPLATE]]) {
    assert(existsSync(path), `${what} is missing: ${path} (run \`make web-test\`, which builds it)`);
  }
  const problems = [];
  let gateway;
  let browser;
  let alice;
  let bob;
  let aliceId;
  let bobId;
  const tokens = {};
  const pages = {};

  await step('the gateway starts with the real handlers and DynamoDB Local', async () => {
    gateway = await startGateway();
  });

  await step('the pages load and connect, each with its own identity', async () => {
    tokens.alice = tokenFor('alice');
    tokens.bob = tokenFor('bob');
    const wsUrl = `ws://127.0.0.1:${gateway.port}/${STAGE}`;
    const staticPort = await serveWeb();
    const query = (user, withUrl) => {
      const params = new URLSearchParams();
      if (withUrl) params.set('url', wsUrl);
      if (tokens[user]) params.set('token', tokens[user]);
      // Alice pings every 5 s, to prove the keep-alive without waiting minutes.
      if (user === 'alice') params.set('ping', '5');
      return params.toString();
    };
    // Alice uses the page the gateway serves (when it does); Bob a copy served elsewhere, pointed
    // at the gateway with ?url= as for a deployed stage.
    const servedByGateway = await gatewayServesWeb(gateway.port);
    pages.alice = servedByGateway
      ? `http://127.0.0.1:${gateway.port}/?${query('alice', false)}`
      : `http://127.0.0.1:${staticPort}/?${query('alice', true)}`;
    pages.bob = `http://127.0.0.1:${staticPort}/?${query('bob', true)}`;
    console.log(`     alice: ${servedByGateway ? 'page served by the gateway' : 'page served by this test (the gateway does not serve web/ yet)'}`);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS, timeout: 30_000 });
    cleanups.push(() => browser.close());
    [alice, bob] = await Promise.all([
      openChat(browser, 'alice', pages.alice, problems),
      openChat(browser, 'bob', pages.bob, problems),
    ]);
    [aliceId, bobId] = await Promise.all([connectionId(alice), connectionId(bob)]);
    assert(aliceId !== bobId, 'both pages show the same connection id');
    for (const [page, user] of [[alice, 'alice'], [bob, 'bob']]) {
      const shown = await page.textContent('#identity .user');
      const expected = tokens[user] ? user : 'anonymous';
      assert(shown.includes(expected), `${user}'s identity shows "${shown}", expected "${expected}"`);
    }
    assert((await alice.textContent('#status')) === 'Connected', 'the status does not say Connected');
  });

  await step('both join a room and exchange messages, with sender and time', async () => {
    await Promise.all([joinRoom(alice, ROOM), joinRoom(bob, ROOM)]);
    await say(alice, 'hello from alice');
    const atBob = messageIn(bob, 'hello from alice');
    await atBob.waitFor();
    const sender = await atBob.locator('.sender').textContent();
    assert(sender === (tokens.alice ? 'alice' : aliceId), `bob sees the sender as "${sender}"`);
    const time = await atBob.locator('time').getAttribute('datetime');
    assert(time && !Number.isNaN(Date.parse(time)), `the message has no time (${time})`);
    assert(await messageIn(alice, 'hello from alice').evaluate((li) => li.classList.contains('mine')),
      'alice\'s own message is not marked as hers');
    await say(bob, 'hi alice, bob here');
    await messageIn(alice, 'hi alice, bob here').waitFor();
  });

  await step('a message shows pending, then sent with the id of its copy, once in each page', async () => {
    const text = 'acked once, by ref';
    await watchMessage(alice, text);
    await say(alice, text);
    const mine = alice.locator(`#log li.message[data-state="sent"]`).filter({ has: alice.locator('.text', { hasText: text }) });
    await mine.waitFor();
    const id = await mine.getAttribute('data-id');
    assert(id, 'the sent message has no data-id');
    const atBob = bob.locator(`#log li.message[data-id=${JSON.stringify(id)}]`);
    await atBob.waitFor();
    assert(await atBob.locator('.text').textContent() === text, 'bob\'s copy with that id has another text');
    // The copy may come after the ack: give it time to (not) show twice.
    await sleep(500);
    const watch = await readWatch(alice);
    assert(watch.states[0] === 'pending' && watch.states.includes('sent'),
      `alice's message went through the states ${JSON.stringify(watch.states)}, not pending then sent`);
    assert(watch.most === 1, `alice's page showed the message ${watch.most} times at once`);
    for (const [page, who] of [[alice, 'alice'], [bob, 'bob']]) {
      const shown = await messagesWithText(page, text);
      assert(shown.length === 1 && shown[0].id === id,
        `${who}'s page shows the message ${shown.length} times: ${JSON.stringify(shown)} (sent id ${id})`);
    }
    assert(!(await messagesWithText(bob, text))[0].state, 'bob\'s copy carries a send state');
  });

  await step('leaving and joining again loads the room\'s history', async () => {
    await bob.click('#leave');
    await bob.waitForSelector(`#rooms button[data-key="#${ROOM}"]`, { state: 'detached' });
    await joinRoom(bob, ROOM);
    await bob.locator('#log li.message.from-history', { hasText: 'hello from alice' }).waitFor();
    await bob.locator('#log li.message.from-history', { hasText: 'hi alice, bob here' }).waitFor();
    const order = await bob.$$eval('#log li.message .text', (els) => els.map((el) => el.textContent));
    assert(order.indexOf('hello from alice') < order.indexOf('hi alice, bob here'), `history is not oldest first: ${order}`);
  });

  await step('a whisper reaches only its target, in a direct conversation', async () => {
    await alice.fill('#whisper-to', bobId);
    await alice.fill('#text', 'psst, bob: a secret');
    await alice.click('#whisper');
    const direct = bob.locator(`#directs button[data-key="@${aliceId}"]`);
    await direct.locator('.badge').waitFor();
    await direct.click();
    const whisper = messageIn(bob, 'psst, bob: a secret');
    await whisper.waitFor();
    assert(await whisper.evaluate((li) => li.classList.contains('direct')), 'the whisper is not marked direct');
    // Alice sees what she sent in her conversation with Bob.
    await messageIn(alice, 'psst, bob: a secret').waitFor();
    await bob.click(`#rooms button[data-key="#${ROOM}"]`);
    assert(await messageIn(bob, 'psst, bob: a secret').count() === 0, 'the whisper shows in the room');
    await alice.click(`#rooms button[data-key="#${ROOM}"]`);
  });

  await step('markup in a message is shown as text, never run or parsed', async () => {
    await say(alice, SCRIPT_TEXT);
    const atBob = bob.locator('#log li.message .text').filter({ hasText: '<script>' });
    await atBob.waitFor();
    assert(await atBob.textContent() === SCRIPT_TEXT, `bob sees "${await atBob.textContent()}"`);
    assert(await atBob.isVisible(), 'the text is not visible');
    // What a person sees is the literal text.
    await bob.getByText(SCRIPT_TEXT, { exact: true }).waitFor({ state: 'visible' });
    for (const page of [alice, bob]) {
      const injected = await page.evaluate(() => ({
        elements: document.querySelectorAll('#log script, #log img, #log b').length,
        ran: window.__injected ?? null,
      }));
      assert(injected.elements === 0, `${injected.elements} element(s) were injected`);
      assert(injected.ran === null, `the markup ran (window.__injected = ${injected.ran})`);
    }
  });

  await step('an error frame is shown readably', async () => {
    await alice.fill('#join-room', 'not a room!');
    await alice.press('#join-room', 'Enter');
    const error = alice.locator('#log li.notice.error[data-code="invalid"]').last();
    await error.waitFor();
    const text = await error.textContent();
    assert(/invalid: .*room/i.test(text), `the error reads "${text}"`);
    assert(/request \S+/.test(text), `the error does not quote its request id: "${text}"`);
  });

  await step('the page reconnects after the gateway drops the connection, and rejoins its rooms', async () => {
    const url = `http://127.0.0.1:${gateway.port}/${STAGE}/@connections/${encodeURIComponent(bobId)}`;
    const response = await fetch(
      url,
      { method: 'DELETE', headers: signedHeaders('DELETE', url), signal: AbortSignal.timeout(5000) },
    );
    assert(response.status === 204, `DELETE @connections answered ${response.status}`);
    // Sent while bob is away: his new connection must catch up on it through `after`.
    const missed = 'sent while bob was away';
    await say(alice, missed);
    await bob.waitForSelector('#status[data-state="reconnecting"]');
    await bob.locator('#log li.notice.error', { hasText: 'Connection closed' }).waitFor();
    await bob.waitForSelector('#status[data-state="open"]');
    const newId = await connectionId(bob);
    assert(newId && newId !== bobId, 'the connection id did not change');
    await bob.locator('#log li.notice.info', { hasText: 'Reconnected' }).waitFor();
    await bob.locator('#log li.message.from-history', { hasText: missed }).waitFor();
    await alice.locator('#log li.message[data-state="sent"]', { hasText: missed }).waitFor();
    const shown = await messagesWithText(bob, missed);
    assert(shown.length === 1, `bob shows the missed message ${shown.length} times: ${JSON.stringify(shown)}`);
    assert(shown[0].classes.split(' ').includes('from-history'), `the missed message is not from-history: ${shown[0].classes}`);
    await say(alice, 'still there, bob?');
    await messageIn(bob, 'still there, bob?').waitFor();
    await say(bob, 'yes, back again');
    await messageIn(alice, 'yes, back again').waitFor();
    bobId = newId;
  });

  await step(`a room beyond the limit (${MAX_ROOMS} per connection) is refused readably`, async () => {
    // The lobby and the test room count: one more fits, the next is refused.
    await joinRoom(alice, 'spare');
    await alice.fill('#join-room', 'one-too-many');
    await alice.press('#join-room', 'Enter');
    const refused = alice.locator('#log li.notice.error[data-code="limit_exceeded"]').last();
    await refused.waitFor();
    const text = await refused.textContent();
    assert(/Room limit reached: /.test(text) && text.includes(String(MAX_ROOMS)), `the notice reads "${text}"`);
    assert(!/limit_exceeded/.test(text), `the notice shows the raw code: "${text}"`);
    assert(await alice.locator('#rooms button[data-key="#one-too-many"]').count() === 0, 'the refused room is listed');
    await alice.click('#leave');
    await alice.waitForSelector('#rooms button[data-key="#spare"]', { state: 'detached' });
    await alice.click(`#rooms button[data-key="#${ROOM}"]`);
  });

  await step('the keep-alive ping is answered', async () => {
    // Alice's page pings every 5 s (?ping=5); the pong shows the round trip.
    await alice.waitForFunction(() => /^ping \d+ ms$/.test(document.querySelector('#latency').textContent), null, { timeout: 7000 });
  });

  await step('an edit of a web file on disk offers a reload in the page the gateway serves', async () => {
    assert(await alice.isHidden('#reload-hint'), 'the reload hint shows before any edit');
    appendFileSync(join(SERVED_WEB, 'style.css'), '\n/* edited by the browser test */\n');
    await alice.waitForSelector('#reload-hint', { state: 'visible', timeout: WAIT_MS });
    assert(await bob.isHidden('#reload-hint'), 'a page served elsewhere shows the local gateway\'s hint');
  });

  await step('a screenshot of the chat is written', async () => {
    await alice.screenshot({ path: join(OUT, 'chat.png') });
    await bob.click(`#directs button[data-key="@${aliceId}"]`);
    await bob.screenshot({ path: join(OUT, 'chat-direct.png') });
    await bob.click(`#rooms button[data-key="#${ROOM}"]`);
    await bob.screenshot({ path: join(OUT, 'chat-reconnected.png') });
    console.log(`     screenshots: ${join(OUT, 'chat.png')} (and chat-direct.png, chat-reconnected.png)`);
  });

  await step(`a flood of ${FLOOD} messages meets the rate limit readably; the acked ones arrive once`, async () => {
    await bob.click(`#rooms button[data-key="#${ROOM}"]`);
    await alice.evaluate((count) => {
      const text = document.querySelector('#text');
      const form = document.querySelector('#send-form');
      for (let i = 0; i < count; i += 1) {
        text.value = `flood ${i}`;
        form.requestSubmit();
      }
    }, FLOOD);
    // Every one is answered: sent or failed, none left pending.
    await alice.waitForFunction((count) => {
      const flood = [...document.querySelectorAll('#log li.message')]
        .filter((li) => /^flood \d+$/.test(li.querySelector('.text')?.textContent || ''));
      return flood.length === count && flood.every((li) => li.dataset.state === 'sent' || li.dataset.state === 'failed');
    }, FLOOD, { timeout: 15_000 });
    const flood = await alice.$$eval('#log li.message', (items) => items
      .filter((li) => /^flood \d+$/.test(li.querySelector('.text')?.textContent || ''))
      .map((li) => ({ text: li.querySelector('.text').textContent, id: li.dataset.id || '', state: li.dataset.state,
        reason: li.querySelector('.state')?.textContent || '' })));
    const sent = flood.filter((m) => m.state === 'sent');
    const failed = flood.filter((m) => m.state === 'failed');
    console.log(`     flood: ${sent.length} sent, ${failed.length} refused`);
    assert(sent.length > 0, 'none of the flood was sent');
    const notice = alice.locator('#log li.notice.error[data-code="rate_limited"]').last();
    await notice.waitFor();
    const text = await notice.textContent();
    assert(/Slow down: too many messages at once; try again in \d+(\.\d)? s\./.test(text), `the rate-limit notice reads "${text}"`);
    assert(!/rate_limited/.test(text), `the rate-limit notice shows the raw code: "${text}"`);
    for (const m of failed) {
      assert(/too many messages at once/.test(m.reason), `"${m.text}" failed with "${m.reason}"`);
    }
    assert(sent.every((m) => m.id), 'a sent message has no id');
    // Bob gets every acked message, each once.
    await bob.waitForFunction((ids) => {
      const shown = new Set([...document.querySelectorAll('#log li.message')].map((li) => li.dataset.id));
      return ids.every((id) => shown.has(id));
    }, sent.map((m) => m.id), { timeout: 10_000 });
    const atBob = await bob.$$eval('#log li.message', (items) => items.map((li) => li.dataset.id || ''));
    for (const m of sent) {
      const times = atBob.filter((id) => id === m.id).length;
      assert(times === 1, `bob shows "${m.text}" ${times} times`);
    }
    await alice.screenshot({ path: join(OUT, 'chat-flood.png') });
  });

  await step('no script errors or policy violations in the pages', async () => {
    assert(problems.length === 0, problems.join('\n'));
  });
}

async function cleanup() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await Promise.race([fn(), sleep(20_000)]);
    } catch (error) {
      console.log(`cleanup: ${error.message}`);
    }
  }
}

let finished = false;
async function finish(code) {
  if (finished) return;
  finished = true;
  await cleanup();
  if (results.failed > 0 && gatewayLog) {
    console.log(`---- gateway log (last lines; all in ${join(OUT, 'gateway.log')}) ----`);
    console.log(gatewayLog.split('\n').slice(-15).map((line) => truncate(line, 400)).join('\n'));
  }
  console.log(`web: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`${results.passed} passed, ${results.failed} failed${results.skipped ? `, ${results.skipped} skipped` : ''}`);
  process.exit(code || (results.failed > 0 ? 1 : 0));
}

const watchdog = setTimeout(() => {
  console.log(`FAIL the suite did not finish within ${SUITE_LIMIT_MS / 1000} s`);
  results.failed += 1;
  finish(1);
}, SUITE_LIMIT_MS);
watchdog.unref();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    console.log(`interrupted (${signal})`);
    results.failed += 1;
    finish(130);
  });
}

main().then(() => finish(0), (error) => {
  console.log(`FAIL ${error.message}`);
  results.failed += 1;
  finish(1);
});

/**
 * SigV4 headers for a bodyless @connections call with the gateway's developer key (`local`),
 * as the AWS SDK signs it: the gateway checks every @connections signature, as AWS does.
 * The path is encoded a second time, segment by segment, as the SDK's signer does.
 */
function signedHeaders(method, url, { key = 'local', secret = 'local', region = 'us-east-1' } = {}) {
  const sha256 = (data) => createHash('sha256').update(data).digest('hex');
  const hmac = (k, data) => createHmac('sha256', k).update(data).digest();
  const { host, pathname } = new URL(url);
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const canonicalUri = pathname.split('/').map((s) => encodeURIComponent(s)).join('/');
  const canonical = [method, canonicalUri, '', `host:${host}\nx-amz-date:${amzDate}\n`, 'host;x-amz-date', sha256('')].join('\n');
  const scope = `${day}/${region}/execute-api/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  let signingKey = hmac(`AWS4${secret}`, day);
  for (const part of [region, 'execute-api', 'aws4_request']) signingKey = hmac(signingKey, part);
  const signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
  return {
    'x-amz-date': amzDate,
    authorization: `AWS4-HMAC-SHA256 Credential=${key}/${scope}, SignedHeaders=host;x-amz-date, Signature=${signature}`,
  };
}
