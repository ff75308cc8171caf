'use strict';
// A grpc-js client of hangup.example.v1.SubscriptionService, for the
// cross-language interop matrix (test/polyglot/interop_test.go).
//
//   node client.js --target 127.0.0.1:9090 --case unary|streaming|large|cancel
//
// It exits 0 when the case passed and prints one line saying what went
// wrong otherwise.

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const root = path.resolve(__dirname, '..', '..');
const examplev1 = grpc.loadPackageDefinition(
  protoLoader.loadSync('hangup/example/v1/subscription.proto', {
    keepCase: false,
    longs: Number,
    defaults: true,
    includeDirs: [path.join(root, 'examples', 'proto')],
  }),
).hangup.example.v1;

// largeSize is the payload of the large case, each way (bytes).
const largeSize = 4 * 1024 * 1024;
// maxMessage is above largeSize plus the message's framing.
const maxMessage = 16 * 1024 * 1024;
// freeBound is how soon a cancelled call's session must be freed.
const freeBoundMs = 5000;

function sessions(client) {
  return new Promise((resolve, reject) => {
    client.Sessions({}, { deadline: Date.now() + 5000 }, (err, reply) => {
      if (err) reject(new Error(`Sessions: ${err.message}`));
      else resolve(reply.sessions);
    });
  });
}

// Reader turns a Subscribe call's events into awaitable reads.
class Reader {
  constructor(call) {
    this.queue = [];
    this.waiters = [];
    const push = (item) => {
      const w = this.waiters.shift();
      if (w) w(item);
      else this.queue.push(item);
    };
    call.on('data', (u) => push({ update: u }));
    call.on('error', (err) => push({ err }));
    call.on('status', (st) => {
      if (st.code === grpc.status.OK) push({ end: true });
    });
  }

  next() {
    if (this.queue.length > 0) return Promise.resolve(this.queue.shift());
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  async update(what) {
    const item = await this.next();
    if (item.err) throw new Error(`${what}: ${item.err.message}`);
    if (item.end) throw new Error(`${what}: the call ended early`);
    return item.update;
  }
}

async function streaming(client, n, payload) {
  const call = client.Subscribe();
  const r = new Reader(call);
  const first = await r.update('first Update');
  if (first.seq !== 0) throw new Error(`first Update has seq ${first.seq}, want 0`);
  for (let i = 1; i <= n; i++) {
    const topic = `topic-${i}`;
    call.write({ topic, payload });
    const u = await r.update(`Update ${i}`);
    if (u.topic !== topic || u.seq !== i) {
      throw new Error(`Update ${i} has topic ${u.topic} seq ${u.seq}, want ${topic} seq ${i}`);
    }
    if (!Buffer.from(u.payload).equals(payload)) {
      throw new Error(`Update ${i} has a payload of ${u.payload.length} bytes that differs from the ${payload.length} sent`);
    }
  }
  call.end();
  const last = await r.next();
  if (last.err) throw new Error(`after half-close: ${last.err.message}, want OK`);
  if (!last.end) throw new Error('after half-close: an extra Update, want the call to end with OK');
}

async function cancel(client) {
  const base = await sessions(client);
  const call = client.Subscribe();
  const r = new Reader(call);
  const first = await r.update('first Update');
  if (first.seq !== 0) throw new Error(`first Update has seq ${first.seq}, want 0`);
  call.cancel();
  const deadline = Date.now() + freeBoundMs;
  let n;
  for (;;) {
    n = await sessions(client);
    if (n <= base) return;
    if (Date.now() > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`the server holds ${n} sessions ${freeBoundMs} ms after the cancel, want ${base}`);
}

async function main() {
  const { values } = parseArgs({
    options: { target: { type: 'string' }, case: { type: 'string' } },
  });
  if (!values.target) throw new Error('--target HOST:PORT is required');
  const client = new examplev1.SubscriptionService(values.target, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': maxMessage,
    'grpc.max_send_message_length': maxMessage,
  });
  try {
    switch (values.case) {
      case 'unary': {
        const n = await sessions(client);
        if (!Number.isInteger(n) || n < 0) throw new Error(`Sessions = ${n}, want a count`);
        break;
      }
      case 'streaming':
        await streaming(client, 3, Buffer.alloc(0));
        break;
      case 'large':
        await streaming(client, 1, Buffer.alloc(largeSize, 0x5a));
        break;
      case 'cancel':
        await cancel(client);
        break;
      default:
        throw new Error(`--case ${JSON.stringify(values.case)}: want unary, streaming, large or cancel`);
    }
  } finally {
    client.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.log(`node client: ${err.message}`);
    process.exit(1);
  },
);
