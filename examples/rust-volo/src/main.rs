//! A Volo-gRPC app behind the hangup sidecar. It holds one session per
//! Subscribe stream, keyed by the x-hangup-connection-id and
//! x-hangup-stream-id headers the sidecar adds to every request, and frees
//! it when hangup.notify.v1.DisconnectNotify says the client is gone.
//!
//! Volo-gRPC gives a handler no "client disconnected" callback (the problem
//! reported in cloudwego/volo#464): a reset stream surfaces only as an error
//! on the next read, and a silent client not at all. hangup's event fills
//! that gap.
//!
//!     hangup-example-volo --port 8080 --notify-port 15091 [--watch 127.0.0.1:15092]
//!
//! With --watch it also reads the same events from the sidecar's
//! hangup.notify.v1.DisconnectWatch service (pull mode, the sidecar's
//! --watch-addr), as a client: for apps where a second server is awkward.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pilota::FastStr;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use volo_grpc::metadata::MetadataMap;
use volo_grpc::server::{Server, ServiceBuilder};
use volo_grpc::{BoxStream, RecvStream, Request, Response, Status};

mod gen {
    include!(concat!(env!("OUT_DIR"), "/volo_gen.rs"));
}

use gen::volo_gen::hangup::example::v1::{
    SessionsReply, SessionsRequest, SubscribeRequest, SubscriptionService,
    SubscriptionServiceServer, Update,
};
use gen::volo_gen::hangup::notify::v1::{
    DisconnectEvent, DisconnectNotify, DisconnectNotifyServer, DisconnectWatchClientBuilder,
    NotifyRequest, NotifyResponse, Scope, WatchRequest, WatchResponse,
};

/// Names a stream the way a DisconnectEvent does.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    conn: FastStr,
    stream: u32,
}

/// A held session: the per-stream state the app must not leak.
struct Held {
    id: u64,                       // tells this session from a later one under the same key
    free: oneshot::Sender<String>, // ends the stream's task, with the reason
}

#[derive(Default)]
struct Sessions {
    map: Mutex<HashMap<Key, Held>>,
    ids: AtomicU64,
}

impl Sessions {
    /// Names a call the way hangup does; a call without the headers (no
    /// sidecar in front) gets a local id that no event can name.
    fn key_of(&self, md: &MetadataMap) -> Key {
        let conn = md
            .get("x-hangup-connection-id")
            .and_then(|v| v.to_str().ok());
        let stream = md
            .get("x-hangup-stream-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u32>().ok());
        match (conn, stream) {
            (Some(c), Some(s)) if !c.is_empty() => Key {
                conn: FastStr::new(c),
                stream: s,
            },
            _ => Key {
                conn: FastStr::new(format!(
                    "{LOCAL_PREFIX}{}",
                    self.ids.fetch_add(1, Ordering::Relaxed) + 1
                )),
                stream: 0,
            },
        }
    }

    fn add(self: &Arc<Self>, key: Key) -> (Guard, oneshot::Receiver<String>) {
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let (free, freed) = oneshot::channel();
        self.map
            .lock()
            .unwrap()
            .insert(key.clone(), Held { id, free });
        (
            Guard {
                sessions: self.clone(),
                key,
                id,
            },
            freed,
        )
    }

    /// Unlinks every session the event names and ends its stream. An event
    /// for a session already gone changes nothing, so redelivery is harmless.
    ///
    /// A SCOPE_SIDECAR event names the sidecar process now live: every
    /// session relayed by another incarnation belonged to a sidecar that
    /// died without reporting it.
    fn free(&self, ev: &DisconnectEvent) -> usize {
        let live = ev.incarnation.as_str();
        let names = |k: &Key| match ev.scope {
            Scope::SCOPE_STREAM => k.conn == ev.connection_id && k.stream == ev.stream_id,
            Scope::SCOPE_CONNECTION => k.conn == ev.connection_id,
            Scope::SCOPE_SIDECAR => {
                !live.is_empty() && incarnation_of(k.conn.as_str()).is_some_and(|inc| inc != live)
            }
            _ => false, // unknown: leave the state alone
        };
        let mut map = self.map.lock().unwrap();
        let keys: Vec<Key> = map.keys().filter(|k| names(k)).cloned().collect();
        for k in &keys {
            if let Some(held) = map.remove(k) {
                // The sidecar also resets the app-side stream; this covers
                // the event arriving first. A task already gone is fine.
                let _ = held.free.send(ev.reason.to_string());
            }
        }
        keys.len()
    }
}

/// Starts the ids of calls that did not come through hangup: no event frees
/// them.
const LOCAL_PREFIX: &str = "local-";

/// The sidecar process that relayed a connection: its id is
/// "<incarnation>-<n>". Local ids have none.
fn incarnation_of(conn: &str) -> Option<&str> {
    if conn.starts_with(LOCAL_PREFIX) {
        return None;
    }
    conn.split_once('-')
        .map(|(inc, _)| inc)
        .filter(|inc| !inc.is_empty())
}

/// Removes its session when the stream's task ends, however it ends.
struct Guard {
    sessions: Arc<Sessions>,
    key: Key,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut map = self.sessions.map.lock().unwrap();
        if map.get(&self.key).is_some_and(|h| h.id == self.id) {
            map.remove(&self.key);
        }
    }
}

struct App {
    sessions: Arc<Sessions>,
}

impl SubscriptionService for App {
    async fn subscribe(
        &self,
        req: Request<RecvStream<SubscribeRequest>>,
    ) -> Result<Response<BoxStream<'static, Result<Update, Status>>>, Status> {
        let key = self.sessions.key_of(req.metadata());
        let mut inbound = req.into_inner();
        let (guard, mut freed) = self.sessions.add(key.clone());
        println!("[rust-volo] session {}/{} held", key.conn, key.stream);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let _guard = guard;
            let update = |topic: FastStr, seq: i64, payload| Update {
                topic,
                seq,
                connection_id: key.conn.clone(),
                stream_id: key.stream,
                payload,
            };
            let mut seq = 0;
            if tx
                .send(Ok(update(FastStr::empty(), seq, Default::default())))
                .await
                .is_err()
            {
                return;
            }
            loop {
                tokio::select! {
                    msg = inbound.next() => match msg {
                        Some(Ok(r)) => {
                            seq += 1;
                            if tx.send(Ok(update(r.topic, seq, r.payload))).await.is_err() {
                                return;
                            }
                        }
                        // Half-close: dropping tx ends the call with OK.
                        None => return,
                        // A reset stream shows up only here, as an error.
                        Some(Err(_)) => return,
                    },
                    why = &mut freed => {
                        let why = why.unwrap_or_default();
                        let _ = tx.send(Err(Status::cancelled(format!("hangup: client gone ({why})")))).await;
                        return;
                    }
                    // The response stream was dropped: the client is gone.
                    _ = tx.closed() => return,
                }
            }
        });
        let out: BoxStream<'static, Result<Update, Status>> = Box::pin(ReceiverStream::new(rx));
        Ok(Response::new(out))
    }

    async fn sessions(
        &self,
        _: Request<SessionsRequest>,
    ) -> Result<Response<SessionsReply>, Status> {
        let n = self.sessions.map.lock().unwrap().len();
        Ok(Response::new(SessionsReply { sessions: n as i64 }))
    }
}

struct Notifier {
    sessions: Arc<Sessions>,
}

impl DisconnectNotify for Notifier {
    /// Only unlinks state and answers at once, so that the sidecar's call
    /// never waits on the app's cleanup.
    async fn notify(
        &self,
        req: Request<NotifyRequest>,
    ) -> Result<Response<NotifyResponse>, Status> {
        for ev in &req.get_ref().events {
            free_and_log(&self.sessions, ev, "notify");
        }
        Ok(Response::new(NotifyResponse {}))
    }
}

/// Frees what one event names, pushed or watched, and logs it.
fn free_and_log(sessions: &Sessions, ev: &DisconnectEvent, how: &str) {
    let n = sessions.free(ev);
    if n > 0 {
        let what = if ev.scope == Scope::SCOPE_SIDECAR {
            format!("sidecars other than {}", ev.incarnation)
        } else {
            format!("{}/{}", ev.connection_id, ev.stream_id)
        };
        println!(
            "[rust-volo] freed {n} session(s) of {what}: {} (event {}, {how})",
            ev.reason.to_string(),
            ev.event_id
        );
    }
}

/// Pull mode: reads the sidecar's DisconnectWatch.Watch at addr for as long
/// as the app runs, calling again whenever a stream ends.
///
/// It keeps its position, the incarnation and sequence of the last event it
/// handled, and sends it back on every call, so that it gets each event it
/// missed while away (as long as the sidecar's replay buffer holds it) and
/// none twice. The position lives in memory: an app that restarts holds no
/// session, and starts at the sidecar's oldest buffered event.
async fn watch(addr: SocketAddr, sessions: Arc<Sessions>) {
    let client = DisconnectWatchClientBuilder::new("hangup-watch")
        .address(volo::net::Address::from(addr))
        .build();
    let (mut inc, mut after) = (FastStr::empty(), 0u64);
    let mut delay = Duration::from_millis(100);
    loop {
        let req = WatchRequest {
            incarnation: inc.clone(),
            after_sequence: after,
        };
        match client.watch(req).await {
            Ok(resp) => {
                let mut events = resp.into_inner();
                loop {
                    match events.next().await {
                        Some(Ok(r)) => {
                            delay = Duration::from_millis(100); // it works again
                            handle_watched(&sessions, &r, &mut inc);
                            after = r.sequence;
                        }
                        Some(Err(e)) => {
                            eprintln!("[rust-volo] watch {addr}: stream ended: {e}; resuming after {inc}/{after}");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(e) => eprintln!("[rust-volo] watch {addr}: {e}; retrying in {delay:?}"),
        }
        // Capped backoff, so that a sidecar that restarts is found again
        // within 2s and one that is down is not called in a tight loop.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Handles one watched event: a new incarnation frees every session of
/// any other (even when its SCOPE_SIDECAR event fell in a gap), a reported
/// gap is logged, and the event frees what it names.
fn handle_watched(sessions: &Sessions, r: &WatchResponse, inc: &mut FastStr) {
    let Some(ev) = r.event.as_ref() else { return };
    println!(
        "[rust-volo] watched event {} sequence {}: {} {} {}/{}",
        ev.event_id,
        r.sequence,
        ev.scope.to_string(),
        ev.reason.to_string(),
        ev.connection_id,
        ev.stream_id
    );
    if ev.incarnation != *inc && !ev.incarnation.is_empty() {
        let mut live = ev.clone();
        live.scope = Scope::SCOPE_SIDECAR;
        free_and_log(sessions, &live, "watch, new incarnation");
        *inc = ev.incarnation.clone();
    }
    if r.missed_before > 0 {
        // Those events named streams the sidecar also reset toward the app,
        // whose tasks then ended and freed their sessions; only state that
        // outlives a stream would need reconciling here.
        eprintln!(
            "[rust-volo] watch: the sidecar's buffer no longer held {} event(s) before sequence {}",
            r.missed_before, r.sequence
        );
    }
    free_and_log(sessions, ev, "watch");
}

/// The command line: --port N --notify-port N [--watch HOST:PORT].
struct Args {
    port: u16,
    notify_port: u16,
    watch: Option<SocketAddr>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        port: 8080,
        notify_port: 15091,
        watch: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag}: missing value"))?;
        let port = || {
            value
                .parse::<u16>()
                .map_err(|_| format!("{flag} {value:?}: want a TCP port, 0 to 65535"))
        };
        match flag.as_str() {
            "--port" => a.port = port()?,
            "--notify-port" => a.notify_port = port()?,
            "--watch" => {
                a.watch = Some(value.parse::<SocketAddr>().map_err(|_| {
                    format!("--watch {value:?}: want the sidecar's --watch-addr as IP:port, e.g. 127.0.0.1:15092")
                })?)
            }
            _ => {
                return Err(format!(
                    "unknown flag {flag}; want --port N --notify-port N [--watch IP:PORT]"
                ))
            }
        }
    }
    Ok(a)
}

#[volo::main]
async fn main() {
    let Args {
        port,
        notify_port,
        watch: watch_addr,
    } = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("[rust-volo] {e}");
            std::process::exit(2)
        }
    };
    let sessions = Arc::new(Sessions::default());
    let app_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let notify_addr = SocketAddr::from(([127, 0, 0, 1], notify_port));
    // Volo-gRPC sets no limit on a message's size, so large payloads need
    // no option here (tonic's and grpc-java's 4 MiB defaults must be raised).
    let app = Server::new()
        .add_service(
            ServiceBuilder::new(SubscriptionServiceServer::new(App {
                sessions: sessions.clone(),
            }))
            .build(),
        )
        .run(volo::net::Address::from(app_addr));
    if let Some(addr) = watch_addr {
        // Ends with the process, as the servers do.
        tokio::spawn(watch(addr, sessions.clone()));
        println!("[rust-volo] watching {addr}");
    }
    let notify = Server::new()
        .add_service(
            ServiceBuilder::new(DisconnectNotifyServer::new(Notifier { sessions })).build(),
        )
        .run(volo::net::Address::from(notify_addr));
    println!("[rust-volo] listening app={app_addr} notify={notify_addr}");
    let result = tokio::select! {
        r = app => r.map_err(|e| format!("serve 127.0.0.1:{port}: {e}")),
        r = notify => r.map_err(|e| format!("serve 127.0.0.1:{notify_port}: {e}")),
    };
    if let Err(e) = result {
        eprintln!("[rust-volo] {e}");
        std::process::exit(1);
    }
}
