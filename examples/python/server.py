"""A grpcio (asyncio) app behind the hangup sidecar.

It holds one session per Subscribe stream, keyed by the
x-hangup-connection-id and x-hangup-stream-id headers the sidecar adds to
every request, and frees it when hangup.notify.v1.DisconnectNotify says the
client is gone.

    python server.py --port 8080 --notify-port 15091

The gRPC code is generated into gen/ by scripts/install-polyglot.sh python.
"""

import argparse
import asyncio
import itertools
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402

from hangup.example.v1 import subscription_pb2, subscription_pb2_grpc  # noqa: E402
from hangup.notify.v1 import notify_pb2, notify_pb2_grpc  # noqa: E402


def log(msg):
    print(f"[python] {msg}", flush=True)


# Starts the ids of calls that did not come through hangup: they have no
# incarnation, so no event frees them.
LOCAL_PREFIX = "local-"


def incarnation_of(connection_id):
    """The sidecar process that relayed a connection: its id is
    "<incarnation>-<n>". Local ids have none."""
    inc, dash, _ = connection_id.partition("-")
    if not dash or not inc or connection_id.startswith(LOCAL_PREFIX):
        return ""
    return inc


class Session:
    """The per-stream state the app must not leak."""

    def __init__(self, connection_id, stream_id):
        self.connection_id = connection_id
        self.stream_id = stream_id
        self.freed = asyncio.Event()  # set when hangup says the client is gone
        self.reason = ""

    @property
    def key(self):
        return (self.connection_id, self.stream_id)


class Sessions:
    """Sessions keyed the way a DisconnectEvent names a stream. The event
    loop is the only thread that touches them, so no lock is needed."""

    def __init__(self):
        self.by_key = {}
        self.local_ids = itertools.count(1)  # for calls not through hangup

    def key_of(self, context):
        md = dict(context.invocation_metadata() or ())
        conn = md.get("x-hangup-connection-id", "")
        try:
            stream = int(md.get("x-hangup-stream-id", ""))
        except ValueError:
            stream = None
        if not conn or stream is None:
            # No sidecar in front: a local id that no event can name.
            return f"{LOCAL_PREFIX}{next(self.local_ids)}", 0
        return conn, stream

    def add(self, session):
        self.by_key[session.key] = session

    def remove(self, session):
        """Unlinks session if it is still held; says whether it was."""
        if self.by_key.get(session.key) is not session:
            return False
        del self.by_key[session.key]
        return True

    def free(self, event):
        """Unlinks every session the event names and wakes its handler, which
        ends the call with CANCELLED. An event for a session already gone
        changes nothing, so redelivery is harmless."""
        if event.scope == notify_pb2.SCOPE_STREAM:
            match = lambda s: s.connection_id == event.connection_id and s.stream_id == event.stream_id  # noqa: E731
        elif event.scope == notify_pb2.SCOPE_CONNECTION:
            match = lambda s: s.connection_id == event.connection_id  # noqa: E731
        elif event.scope == notify_pb2.SCOPE_SIDECAR and event.incarnation:
            # The sidecar process named is live: a session relayed by any
            # other incarnation belongs to a sidecar that died without
            # reporting it. Calls not through hangup have no incarnation.
            match = lambda s: incarnation_of(s.connection_id) not in ("", event.incarnation)  # noqa: E731
        else:
            return 0  # unknown scope: leave the state alone
        freed = 0
        for s in list(self.by_key.values()):
            if match(s) and self.remove(s):
                freed += 1
                # The sidecar also resets the app-side stream; ending the
                # call here covers the event arriving first.
                s.reason = notify_pb2.Reason.Name(event.reason)
                s.freed.set()
        return freed


class SubscriptionService(subscription_pb2_grpc.SubscriptionServiceServicer):
    def __init__(self, sessions):
        self.sessions = sessions

    async def Subscribe(self, request_iterator, context):
        conn, stream = self.sessions.key_of(context)
        s = Session(conn, stream)
        self.sessions.add(s)
        log(f"session {conn}/{stream} held")
        freed = asyncio.ensure_future(s.freed.wait())
        read = None
        try:
            seq = 0
            await context.write(subscription_pb2.Update(seq=seq, connection_id=conn, stream_id=stream))
            while True:
                read = asyncio.ensure_future(context.read())
                await asyncio.wait({read, freed}, return_when=asyncio.FIRST_COMPLETED)
                if freed.done():
                    await context.abort(grpc.StatusCode.CANCELLED, f"hangup: client gone ({s.reason})")
                req = read.result()
                if req is grpc.aio.EOF:
                    return  # the client half-closed: end with OK
                seq += 1
                await context.write(
                    subscription_pb2.Update(
                        topic=req.topic, seq=seq, connection_id=conn, stream_id=stream, payload=req.payload
                    )
                )
        finally:
            # Runs on a normal end, a client cancel and a hangup free alike.
            for f in (read, freed):
                if f is not None and not f.done():
                    f.cancel()
            self.sessions.remove(s)

    async def Sessions(self, request, context):
        return subscription_pb2.SessionsReply(sessions=len(self.sessions.by_key))


class DisconnectNotify(notify_pb2_grpc.DisconnectNotifyServicer):
    def __init__(self, sessions):
        self.sessions = sessions

    async def Notify(self, request, context):
        # Only unlink state and answer at once, so that the sidecar's call
        # never waits on the app's cleanup.
        for ev in request.events:
            n = self.sessions.free(ev)
            if n:
                reason = notify_pb2.Reason.Name(ev.reason)
                what = f"sidecars other than {ev.incarnation}" if ev.scope == notify_pb2.SCOPE_SIDECAR else f"{ev.connection_id}/{ev.stream_id}"
                log(f"freed {n} session(s) of {what}: {reason} (event {ev.event_id})")
        return notify_pb2.NotifyResponse()


MAX_MESSAGE = 16 * 1024 * 1024  # bytes


def port(value):
    try:
        p = int(value)
    except ValueError:
        p = -1
    if not 0 <= p <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: want a TCP port, 0 to 65535")
    return p


async def serve(app_port, notify_port):
    sessions = Sessions()
    # Above the 4 MiB default, so that clients can send large payloads.
    app = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
    )
    subscription_pb2_grpc.add_SubscriptionServiceServicer_to_server(SubscriptionService(sessions), app)
    notify = grpc.aio.server()
    notify_pb2_grpc.add_DisconnectNotifyServicer_to_server(DisconnectNotify(sessions), notify)
    bound_app = app.add_insecure_port(f"127.0.0.1:{app_port}")
    bound_notify = notify.add_insecure_port(f"127.0.0.1:{notify_port}")
    await app.start()
    await notify.start()
    log(f"listening app=127.0.0.1:{bound_app} notify=127.0.0.1:{bound_notify}")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await asyncio.gather(app.stop(1), notify.stop(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=port, default=8080, help="SubscriptionService port on 127.0.0.1")
    parser.add_argument("--notify-port", type=port, default=15091, help="DisconnectNotify port on 127.0.0.1")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.notify_port))


if __name__ == "__main__":
    main()
