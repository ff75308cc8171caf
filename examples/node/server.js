'use strict';
// A grpc-js app behind the hangup sidecar. It holds one session per
// Subscribe stream, keyed by the x-hangup-connection-id and
// x-hangup-stream-id headers the sidecar adds to every request, and frees
// it when hangup.notify.v1.DisconnectNotify says the client is gone.
//
//   node server.js --port 8080 --notify-port 15091
//
// The .proto files are loaded at run time; nothing is generated.

const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const root = path.resolve(__dirname, '..', '..');
const loadOptions = {
  // camelCase field names, enums by name, int64 as JS numbers (counts fit).
  keepCase: false,
  enums: String,
  longs: Number,
  defaults: true,
  includeDirs: [path.join(root, 'api'), path.join(root, 'examples', 'proto')],
};

function load(file) {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, loadOptions));
}

const notifyv1 = load('hangup/notify/v1/notify.proto').hangup.notify.v1;
const examplev1 = load('hangup/example/v1/subscription.proto').hangup.example.v1;

// localPrefix starts the ids of calls that did not come through hangup;
// they have no incarnation, so no event frees them.
const localPrefix = 'local-';

// incarnationOf returns the sidecar process that relayed a connection: its
// id is "<incarnation>-<n>". Local ids have none.
function incarnationOf(connectionId) {
  const dash = connectionId.indexOf('-');
  if (dash <= 0 || connectionId.startsWith(localPrefix)) return '';
  return connectionId.slice(0, dash);
}

// Sessions is the per-stream state the app must not leak. Keys are
// "connectionId/streamId", the same pair a DisconnectEvent names.
class Sessions {
  constructor() {
    this.byKey = new Map(); // key -> { connectionId, streamId, call }
    this.localIds = 0; // for calls that did not come through hangup
  }

  // keyOf names a call the way hangup does; a call without the headers
  // (no sidecar in front) gets a local id that no event can name.
  keyOf(call) {
    const conn = call.metadata.get('x-hangup-connection-id')[0];
    const stream = Number(call.metadata.get('x-hangup-stream-id')[0]);
    if (typeof conn !== 'string' || conn === '' || !Number.isInteger(stream)) {
      this.localIds += 1;
      return { connectionId: `${localPrefix}${this.localIds}`, streamId: 0 };
    }
    return { connectionId: conn, streamId: stream };
  }

  add(id, call) {
    const key = `${id.connectionId}/${id.streamId}`;
    const s = { ...id, key, call };
    this.byKey.set(key, s);
    return s;
  }

  // remove unlinks s if it is still held; it reports whether it was.
  remove(s) {
    if (this.byKey.get(s.key) !== s) return false;
    this.byKey.delete(s.key);
    return true;
  }

  // free unlinks every session an event names and ends its call. An event
  // for a session already gone changes nothing, so redelivery is harmless.
  // SCOPE_SIDECAR names the sidecar process now live: every session of
  // another incarnation (the part of the connection id before its first
  // "-") belonged to a sidecar that died without reporting it.
  free(ev) {
    let freed = 0;
    for (const s of [...this.byKey.values()]) {
      if (ev.scope === 'SCOPE_SIDECAR') {
        const inc = incarnationOf(s.connectionId);
        if (ev.incarnation === '' || inc === '' || inc === ev.incarnation) continue;
      } else {
        if (s.connectionId !== ev.connectionId) continue;
        if (ev.scope === 'SCOPE_STREAM' && s.streamId !== ev.streamId) continue;
        if (ev.scope !== 'SCOPE_STREAM' && ev.scope !== 'SCOPE_CONNECTION') continue;
      }
      if (!this.remove(s)) continue;
      freed += 1;
      if (!s.call.cancelled) {
        // The sidecar also resets the app-side stream; ending it here
        // covers the event arriving first.
        s.call.emit('error', { code: grpc.status.CANCELLED, details: `hangup: client gone (${ev.reason})` });
      }
    }
    return freed;
  }

  get size() {
    return this.byKey.size;
  }
}

function subscriptionService(sessions, log) {
  return {
    Subscribe(call) {
      const s = sessions.add(sessions.keyOf(call), call);
      const end = () => sessions.remove(s);
      call.on('cancelled', end);
      call.on('error', end);
      call.on('close', end);
      let seq = 0;
      const update = (topic, payload) => ({ topic, seq: seq++, connectionId: s.connectionId, streamId: s.streamId, payload });
      call.write(update('', Buffer.alloc(0)));
      call.on('data', (req) => {
        if (sessions.byKey.get(s.key) === s) call.write(update(req.topic, req.payload));
      });
      call.on('end', () => {
        end();
        call.end();
      });
      log(`session ${s.key} held`);
    },
    Sessions(_call, callback) {
      callback(null, { sessions: sessions.size });
    },
  };
}

function notifyService(sessions, log) {
  return {
    // Notify only unlinks state and answers at once, so the sidecar's
    // call never waits on the app's cleanup.
    Notify(call, callback) {
      for (const ev of call.request.events) {
        const n = sessions.free(ev);
        if (n > 0 && ev.scope === 'SCOPE_SIDECAR') log(`freed ${n} session(s) of sidecars other than ${ev.incarnation}: ${ev.reason} (event ${ev.eventId})`);
        else if (n > 0) log(`freed ${n} session(s) of ${ev.connectionId}/${ev.streamId}: ${ev.reason} (event ${ev.eventId})`);
      }
      callback(null, {});
    },
  };
}

// maxMessage is the largest message the app takes and sends: above the
// 4 MiB default, so that clients can send large payloads.
const maxMessage = 16 * 1024 * 1024;
const serverOptions = {
  'grpc.max_receive_message_length': maxMessage,
  'grpc.max_send_message_length': maxMessage,
};

function bind(server, port) {
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, bound) => {
      if (err) reject(new Error(`listen on 127.0.0.1:${port}: ${err.message}`));
      else resolve(bound);
    });
  });
}

function parsePort(name, value) {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--${name} ${JSON.stringify(value)}: want a TCP port, 0 to 65535`);
  }
  return port;
}

async function main() {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '8080' },
      'notify-port': { type: 'string', default: '15091' },
    },
  });
  const port = parsePort('port', values.port);
  const notifyPort = parsePort('notify-port', values['notify-port']);
  const log = (msg) => console.log(`[node] ${msg}`);

  const sessions = new Sessions();
  const app = new grpc.Server(serverOptions);
  app.addService(examplev1.SubscriptionService.service, subscriptionService(sessions, log));
  const notify = new grpc.Server();
  notify.addService(notifyv1.DisconnectNotify.service, notifyService(sessions, log));

  const appPort = await bind(app, port);
  const boundNotify = await bind(notify, notifyPort);
  log(`listening app=127.0.0.1:${appPort} notify=127.0.0.1:${boundNotify}`);

  const stop = () => {
    app.forceShutdown();
    notify.forceShutdown();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

main().catch((err) => {
  console.error(`[node] ${err.message}`);
  process.exit(1);
});
