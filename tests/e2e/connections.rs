//! What a connection may cost, over real sockets: a deadline for each request's headers (idle
//! or half-sent), one for its body, one for a response the client does not take, a cap on open
//! connections, a role checked before the body is read, and a shutdown that does not wait for
//! idle connections. The connection loop is the
//! same whatever the store, so these run on SQLite alone.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Backend, TestDb, TestServer};

/// Longer than any deadline these tests set, far shorter than the defaults: a read that ends
/// before it was ended by the server's deadline, not by the defaults or by the test giving up.
const PATIENCE: Duration = Duration::from_secs(20);

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; None if it did not within `PATIENCE`.
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

/// Reads one response whose body is `Content-Length` long, leaving the connection open.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "closed before a whole response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

fn body_of(response: &str) -> Value {
    let (_, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

async fn server(tweak: impl FnOnce(&mut warden::config::Config)) -> TestServer {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    tweak(&mut config);
    TestServer::start_with(db, config).await
}

const HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: warden\r\n\r\n";

#[tokio::test]
async fn idle_and_half_sent_connections_are_closed() {
    let s = server(|c| c.server.header_read_timeout_secs = 1).await;
    // Nothing sent at all.
    let mut silent = connect(&s).await;
    // Half a request's headers.
    let mut half = connect(&s).await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: war")
        .await
        .unwrap();
    // A whole request, answered, then nothing more on a keep-alive connection.
    let mut idle = connect(&s).await;
    idle.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    for (what, stream) in [
        ("silent", &mut silent),
        ("half-sent", &mut half),
        ("idle", &mut idle),
    ] {
        let rest = read_to_close(stream).await;
        assert!(
            rest.is_some(),
            "the {what} connection was still open after {PATIENCE:?}"
        );
    }
    // The server itself is fine.
    assert_eq!(s.get("/healthz", &s.admin).await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_get_a_503_until_one_closes() {
    let s = server(|c| c.server.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connect(&s).await;
        c.write_all(HEALTH).await.unwrap();
        assert!(read_response(&mut c).await.starts_with("HTTP/1.1 200"));
        held.push(c);
    }
    // It has sent its request before it is refused: the answer still arrives, not a reset.
    let mut third = connect(&s).await;
    third.write_all(HEALTH).await.unwrap();
    let answer = read_to_close(&mut third)
        .await
        .expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert_eq!(body_of(&answer)["error"]["code"], "too_many_connections");
    // Closing one makes room (once the server has seen it close).
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut c = connect(&s).await;
        c.write_all(HEALTH).await.unwrap();
        // Refused or admitted, the answer has a length.
        if read_response(&mut c).await.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "no room after a connection closed");
    drop(held);
    s.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_loses_its_place() {
    let s = server(|c| {
        c.server.max_connections = 1;
        c.server.send_timeout_secs = 1;
    })
    .await;
    // Hundreds of requests for the 150 KB document, and not a byte of them read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = s.base.trim_start_matches("http://").parse().unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    let asks = b"GET /openapi.json HTTP/1.1\r\nhost: warden\r\n\r\n".repeat(300);
    stalled.write_all(&asks).await.unwrap();
    // It holds the only place until its response has waited a second; then another is served.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut c = connect(&s).await;
        c.write_all(HEALTH).await.unwrap();
        if read_response(&mut c).await.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled connection kept its place"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_for_idle_connections() {
    let s = server(|c| c.server.shutdown_grace_secs = 600).await;
    let _silent = connect(&s).await;
    let mut idle = connect(&s).await;
    idle.write_all(HEALTH).await.unwrap();
    assert!(read_response(&mut idle).await.starts_with("HTTP/1.1 200"));
    // With ten minutes' grace, a shutdown that waited for these would not end in time.
    tokio::time::timeout(PATIENCE, s.stop())
        .await
        .expect("the shutdown waited for idle connections");
    assert!(read_to_close(&mut idle).await.is_some());
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_with_a_408() {
    let s = server(|c| c.server.body_read_timeout_secs = 1).await;
    let bot = s.agent("bot", 2, json!({})).await;
    let mut c = connect(&s).await;
    let head = format!(
        "POST /v1/decisions HTTP/1.1\r\nhost: warden\r\nauthorization: Bearer {bot}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"action\":"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let answer = read_response(&mut c).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(body_of(&answer)["error"]["code"], "body_timeout");
    s.stop().await;
}

#[tokio::test]
async fn a_role_is_refused_before_its_body_is_read() {
    let s = server(|_| {}).await;
    let bot = s.agent("bot", 2, json!({})).await;
    // 31 MiB announced (under the upload limit), 1 KiB sent: the 403 comes without the rest.
    for (token, status, code) in [
        (Some(bot.as_str()), "403", "forbidden_role"),
        (None, "401", "missing_token"),
    ] {
        let mut c = connect(&s).await;
        let auth = token
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /v1/plugins HTTP/1.1\r\nhost: warden\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            31 << 20
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(&[b' '; 1024]).await.unwrap();
        let answer = read_response(&mut c).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
        assert_eq!(body_of(&answer)["error"]["code"], code);
    }
    s.stop().await;
}
