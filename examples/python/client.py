"""A grpcio (C-core) client of hangup.example.v1.SubscriptionService.

For the cross-language interop matrix (test/polyglot/interop_test.go):

    python client.py --target 127.0.0.1:9090 --case unary|streaming|large|cancel

It exits 0 when the case passed and prints one line saying what went wrong
otherwise. The gRPC code is generated into gen/ by
scripts/install-polyglot.sh python.
"""

import argparse
import os
import queue
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402

from hangup.example.v1 import subscription_pb2, subscription_pb2_grpc  # noqa: E402

LARGE_SIZE = 4 * 1024 * 1024  # bytes each way in the large case
MAX_MESSAGE = 16 * 1024 * 1024  # bytes: above LARGE_SIZE plus framing
FREE_BOUND = 5.0  # seconds for a cancelled call's session to be freed
CALL_TIMEOUT = 10.0  # seconds for one call


class Failure(Exception):
    pass


def sessions(stub):
    try:
        return stub.Sessions(subscription_pb2.SessionsRequest(), timeout=CALL_TIMEOUT).sessions
    except grpc.RpcError as e:
        raise Failure(f"Sessions: {e.code().name}: {e.details()}") from None


class Requests:
    """The request stream of a Subscribe call: put() sends, close() half-closes."""

    _end = object()

    def __init__(self):
        self.q = queue.Queue()

    def put(self, req):
        self.q.put(req)

    def close(self):
        self.q.put(self._end)

    def __iter__(self):
        while True:
            req = self.q.get()
            if req is self._end:
                return
            yield req


def next_update(call, what):
    try:
        return next(call)
    except StopIteration:
        raise Failure(f"{what}: the call ended early") from None
    except grpc.RpcError as e:
        raise Failure(f"{what}: {e.code().name}: {e.details()}") from None


def streaming(stub, n, payload):
    reqs = Requests()
    call = stub.Subscribe(iter(reqs), timeout=CALL_TIMEOUT)
    try:
        first = next_update(call, "first Update")
        if first.seq != 0:
            raise Failure(f"first Update has seq {first.seq}, want 0")
        for i in range(1, n + 1):
            topic = f"topic-{i}"
            reqs.put(subscription_pb2.SubscribeRequest(topic=topic, payload=payload))
            u = next_update(call, f"Update {i}")
            if u.topic != topic or u.seq != i:
                raise Failure(f"Update {i} has topic {u.topic} seq {u.seq}, want {topic} seq {i}")
            if u.payload != payload:
                raise Failure(f"Update {i} has a payload of {len(u.payload)} bytes that differs from the {len(payload)} sent")
        reqs.close()
        try:
            extra = next(call)
            raise Failure(f"after half-close: an extra Update (seq {extra.seq}), want the call to end with OK")
        except StopIteration:
            pass
        except grpc.RpcError as e:
            raise Failure(f"after half-close: {e.code().name}: {e.details()}, want OK") from None
    finally:
        reqs.close()
        call.cancel()


def cancel(stub):
    base = sessions(stub)
    reqs = Requests()
    call = stub.Subscribe(iter(reqs), timeout=CALL_TIMEOUT)
    first = next_update(call, "first Update")
    if first.seq != 0:
        raise Failure(f"first Update has seq {first.seq}, want 0")
    call.cancel()
    reqs.close()
    deadline = time.monotonic() + FREE_BOUND
    while True:
        n = sessions(stub)
        if n <= base:
            return
        if time.monotonic() > deadline:
            raise Failure(f"the server holds {n} sessions {FREE_BOUND}s after the cancel, want {base}")
        time.sleep(0.05)  # polling the server: there is nothing to wait on


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the server (or the sidecar)")
    parser.add_argument("--case", required=True, choices=["unary", "streaming", "large", "cancel"])
    args = parser.parse_args()
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
    ]
    with grpc.insecure_channel(args.target, options=options) as channel:
        stub = subscription_pb2_grpc.SubscriptionServiceStub(channel)
        try:
            if args.case == "unary":
                n = sessions(stub)
                if n < 0:
                    raise Failure(f"Sessions = {n}, want a count")
            elif args.case == "streaming":
                streaming(stub, 3, b"")
            elif args.case == "large":
                streaming(stub, 1, (bytes(range(251)) * (LARGE_SIZE // 251 + 1))[:LARGE_SIZE])
            else:
                cancel(stub)
        except Failure as e:
            print(f"python client: {e}", flush=True)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
