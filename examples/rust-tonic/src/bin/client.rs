//! A tonic (hyper/h2) client of hangup.example.v1.SubscriptionService, for
//! the cross-language interop matrix (test/polyglot/interop_test.go).
//!
//!     hangup-example-tonic-client --target 127.0.0.1:9090 --case unary|streaming|large|cancel
//!
//! It exits 0 when the case passed and prints one line saying what went
//! wrong otherwise.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

pub mod examplev1 {
    tonic::include_proto!("hangup.example.v1");
}

use examplev1::subscription_service_client::SubscriptionServiceClient;
use examplev1::{SessionsRequest, SubscribeRequest, Update};

/// The payload of the large case, each way, in bytes.
const LARGE_SIZE: usize = 4 * 1024 * 1024;
/// Above LARGE_SIZE plus the message's framing, in bytes.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How soon a cancelled call's session must be freed.
const FREE_BOUND: Duration = Duration::from_secs(5);
/// Bounds one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

type Client = SubscriptionServiceClient<Channel>;

async fn sessions(client: &mut Client) -> Result<i64, String> {
    let mut req = tonic::Request::new(SessionsRequest {});
    req.set_timeout(CALL_TIMEOUT);
    match client.sessions(req).await {
        Ok(r) => Ok(r.into_inner().sessions),
        Err(s) => Err(format!("Sessions: {:?}: {}", s.code(), s.message())),
    }
}

async fn next_update(inbound: &mut Streaming<Update>, what: &str) -> Result<Update, String> {
    match tokio::time::timeout(CALL_TIMEOUT, inbound.message()).await {
        Err(_) => Err(format!("{what}: none within {CALL_TIMEOUT:?}")),
        Ok(Ok(Some(u))) => Ok(u),
        Ok(Ok(None)) => Err(format!("{what}: the call ended early")),
        Ok(Err(s)) => Err(format!("{what}: {:?}: {}", s.code(), s.message())),
    }
}

/// open starts a Subscribe call and reads its first Update; dropping the
/// returned sender half-closes the call.
async fn open(
    client: &mut Client,
) -> Result<(mpsc::Sender<SubscribeRequest>, Streaming<Update>), String> {
    let (tx, rx) = mpsc::channel(4);
    let mut inbound = client
        .subscribe(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("open Subscribe: {:?}: {}", s.code(), s.message()))?
        .into_inner();
    let first = next_update(&mut inbound, "first Update").await?;
    if first.seq != 0 {
        return Err(format!("first Update has seq {}, want 0", first.seq));
    }
    Ok((tx, inbound))
}

async fn streaming(client: &mut Client, n: i64, payload: Vec<u8>) -> Result<(), String> {
    let (tx, mut inbound) = open(client).await?;
    for i in 1..=n {
        let topic = format!("topic-{i}");
        tx.send(SubscribeRequest {
            topic: topic.clone(),
            payload: payload.clone(),
        })
        .await
        .map_err(|_| format!("send request {i}: the call is gone"))?;
        let u = next_update(&mut inbound, &format!("Update {i}")).await?;
        if u.topic != topic || u.seq != i {
            return Err(format!(
                "Update {i} has topic {} seq {}, want {topic} seq {i}",
                u.topic, u.seq
            ));
        }
        if u.payload != payload {
            return Err(format!(
                "Update {i} has a payload of {} bytes that differs from the {} sent",
                u.payload.len(),
                payload.len()
            ));
        }
    }
    drop(tx); // half-close
    match tokio::time::timeout(CALL_TIMEOUT, inbound.message()).await {
        Err(_) => Err(format!("after half-close: no end within {CALL_TIMEOUT:?}")),
        Ok(Ok(None)) => Ok(()),
        Ok(Ok(Some(u))) => Err(format!(
            "after half-close: an extra Update (seq {}), want the call to end with OK",
            u.seq
        )),
        Ok(Err(s)) => Err(format!(
            "after half-close: {:?}: {}, want OK",
            s.code(),
            s.message()
        )),
    }
}

async fn cancel(client: &mut Client) -> Result<(), String> {
    let base = sessions(client).await?;
    let (tx, inbound) = open(client).await?;
    // Dropping both halves resets the stream: RST_STREAM(CANCEL).
    drop(inbound);
    drop(tx);
    let deadline = tokio::time::Instant::now() + FREE_BOUND;
    loop {
        let n = sessions(client).await?;
        if n <= base {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "the server holds {n} sessions {FREE_BOUND:?} after the cancel, want {base}"
            ));
        }
        // Polling the server: there is nothing to wait on.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(target: &str, case: &str) -> Result<(), String> {
    let channel = Channel::from_shared(format!("http://{target}"))
        .map_err(|e| format!("--target {target:?}: {e}; want HOST:PORT"))?
        .connect_timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("connect to {target}: {e}"))?;
    let mut client = SubscriptionServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    match case {
        "unary" => {
            let n = sessions(&mut client).await?;
            if n < 0 {
                return Err(format!("Sessions = {n}, want a count"));
            }
            Ok(())
        }
        "streaming" => streaming(&mut client, 3, Vec::new()).await,
        "large" => {
            let payload = (0..LARGE_SIZE).map(|i| (i % 251) as u8).collect();
            streaming(&mut client, 1, payload).await
        }
        "cancel" => cancel(&mut client).await,
        other => Err(format!(
            "--case {other:?}: want unary, streaming, large or cancel"
        )),
    }
}

fn parse_args() -> Result<(String, String), String> {
    let mut target = None;
    let mut case = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let slot = match a.as_str() {
            "--target" => &mut target,
            "--case" => &mut case,
            _ => {
                return Err(format!(
                    "unknown argument {a:?}; want --target HOST:PORT --case CASE"
                ))
            }
        };
        *slot = Some(args.next().ok_or_else(|| format!("{a} needs a value"))?);
    }
    match (target, case) {
        (Some(t), Some(c)) => Ok((t, c)),
        _ => Err("want --target HOST:PORT --case unary|streaming|large|cancel".into()),
    }
}

#[tokio::main]
async fn main() {
    let result = match parse_args() {
        Ok((target, case)) => run(&target, &case).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        println!("rust-tonic client: {e}");
        std::process::exit(1);
    }
}
