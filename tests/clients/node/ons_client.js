#!/usr/bin/env node
// Scenario driver for npm `ali-ons@3.12.0` (a pure-JavaScript RocketMQ remoting client).
//
// Prints one JSON object per line on stdout ({"event": ...}); diagnostics go to stderr.
// Every wait is bounded by --timeout-ms; exit codes: 0 ok, 1 error, 3 timeout.
//
// Subcommands:
//   produce  sync sends (optionally delayed); one `sent` event per message.
//   consume  push consumer (clustering); one `received` event per delivery; exits after
//            --expect distinct bodies were consumed successfully (or --stop-after-deliveries).
'use strict';

const fs = require('fs');
const { Producer, Consumer, Message } = require('ali-ons');

const PROPS_REPORTED = [ 'test_prop', 'mode', 'UNIQ_KEY', 'RETRY_TOPIC', 'ORIGIN_MESSAGE_ID',
  'DELAY', 'REAL_TOPIC', 'KEYS', 'TAGS' ];

function emit(event, fields) {
  const o = Object.assign({}, fields || {}, { event });
  process.stdout.write(JSON.stringify(o) + '\n');
}

// ali-ons logs through this object; keep stdout for events only.
const logger = {
  info(...args) { if (process.env.ONS_DEBUG) console.error('[info]', ...args); },
  debug() {},
  warn(...args) { console.error('[warn]', ...args); },
  error(...args) { console.error('[error]', ...args); },
};

function parseArgs(argv) {
  const a = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (!s.startsWith('--')) { a._.push(s); continue; }
    const key = s.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) {
      a[key] = true;
    } else {
      a[key] = next;
      i++;
    }
  }
  return a;
}

function int(v, dflt) {
  if (v === undefined) return dflt;
  const n = parseInt(v, 10);
  if (Number.isNaN(n)) throw new Error(`not a number: ${v}`);
  return n;
}

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`timeout: ${what}`), { timeout: true })), ms);
  });
  return Promise.race([ promise, t ]).finally(() => clearTimeout(timer));
}

// Bodies of `large` sends exceed ali-ons' 4 KiB compression threshold.
const LARGE_BODY_BYTES = 6000;

function bodyFor(prefix, mode, i) {
  const base = `${prefix}|${mode}|${i}`;
  if (mode === 'large') return base + '|' + `large-${i}-`.repeat(LARGE_BODY_BYTES / 8).slice(0, LARGE_BODY_BYTES);
  return base;
}

async function produce(a) {
  const tags = (a.tags || 'TagA').split(',');
  const plan = [];
  for (let i = 0; i < int(a.sync, 0); i++) plan.push([ 'sync', i ]);
  for (let i = 0; i < int(a.large, 0); i++) plan.push([ 'large', i ]);
  const delayLevel = int(a.delayLevel, 0);
  const producer = new Producer({
    httpclient: {},
    nameSrv: a.namesrv,
    producerGroup: a.group || 'ons_pg',
    logger,
  });
  await producer.ready();
  emit('started');
  for (const [ mode, i ] of plan) {
    const body = bodyFor(a.prefix || 'm', mode, i);
    const tag = tags[i % tags.length];
    const keys = `${a.prefix || 'm'}-${mode}-${i}`;
    const props = { test_prop: `${mode}-${i}`, mode };
    const msg = new Message(a.topic, tag, body);
    msg.keys = [ keys ];
    Object.assign(msg.properties, props);
    if (delayLevel) msg.delayTimeLevel = delayLevel;
    const born = Date.now();
    const res = await producer.send(msg);
    if (res.sendStatus !== 'SEND_OK') throw new Error(`send status ${res.sendStatus}`);
    emit('sent', { body, tags: tag, keys, props, mode, msg_id: res.msgId,
      queue_id: res.messageQueue && res.messageQueue.queueId, offset: res.queueOffset, born_ms: born });
  }
  await producer.close();
  emit('done');
}

function recvInfo(msg) {
  const props = {};
  for (const k of PROPS_REPORTED) {
    const v = msg.properties && msg.properties[k];
    if (v) props[k] = String(v);
  }
  return {
    topic: msg.topic,
    body: msg.body ? msg.body.toString('utf8') : null,
    tags: msg.tags || null,
    keys: msg.keys || null,
    props,
    msg_id: msg.msgId,
    queue_id: msg.queueId,
    queue_offset: msg.queueOffset,
    reconsume_times: msg.reconsumeTimes,
    commit_log_offset: msg.commitLogOffset,
    born_ms: msg.bornTimestamp,
    store_ms: msg.storeTimestamp,
    recv_ms: Date.now(),
  };
}

async function consume(a) {
  const expect = int(a.expect, 0);
  const stopAfter = int(a.stopAfterDeliveries, 0);
  const options = {
    httpclient: {},
    nameSrv: a.namesrv,
    consumerGroup: a.group,
    consumeFromWhere: a.from === 'last' ? 'CONSUME_FROM_LAST_OFFSET' : 'CONSUME_FROM_FIRST_OFFSET',
    logger,
  };
  if (a.maxReconsume !== undefined) options.maxReconsumeTimes = int(a.maxReconsume, 16);
  const consumer = new Consumer(options);
  consumer.on('error', err => console.error('[consumer error]', err && err.message));
  const consumed = new Set();
  const seen = new Map();
  let deliveries = 0;
  let finish;
  const finished = new Promise(resolve => { finish = resolve; });

  consumer.subscribe(a.topic, a.expr || '*', async msg => {
    const info = recvInfo(msg);
    const body = info.body;
    deliveries++;
    seen.set(body, (seen.get(body) || 0) + 1);
    const fail = !!a.failAlways || (!!a.failFirst && seen.get(body) === 1);
    info.delivery = seen.get(body);
    info.result = fail ? 'fail' : 'ok';
    emit('received', info);
    if (!fail) consumed.add(body);
    if ((expect > 0 && consumed.size >= expect) || (stopAfter && deliveries >= stopAfter)) finish();
    if (fail) throw new Error('scenario: fail this delivery');
  });
  await consumer.ready();
  emit('started');
  if (a.stopFile) {
    // The test creates this file when all consumers together have seen everything.
    const timer = setInterval(() => { if (fs.existsSync(a.stopFile)) finish(); }, 100);
    finished.then(() => clearInterval(timer));
  }
  try {
    await withTimeout(finished, int(a.timeoutMs, 60000), 'expected messages');
  } catch (err) {
    emit('timeout', { consumed: consumed.size, expected: expect, deliveries });
    process.exit(3);
  }
  // close() persists consumed offsets to the broker.
  await withTimeout(consumer.close(), 20000, 'consumer close');
  emit('done', { consumed: consumed.size, deliveries });
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  const cmd = a._[0];
  if (!a.namesrv) throw new Error('--namesrv is required');
  if (cmd === 'produce') {
    await withTimeout(produce(a), int(a.timeoutMs, 60000), 'produce');
  } else if (cmd === 'consume') {
    await consume(a);
  } else {
    throw new Error(`unknown subcommand ${cmd}`);
  }
}

main().then(() => process.exit(0), err => {
  emit(err && err.timeout ? 'timeout' : 'error', { error: String(err && err.stack || err) });
  process.exit(err && err.timeout ? 3 : 1);
});
