//! `web::router()` over real HTTP on 127.0.0.1: every file of the page is served with its content type, the
//! page's module graph resolves against the served paths, and other paths are 404.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use agents_transport::web;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("response within 10 s")
    .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

#[tokio::test]
async fn serves_the_page_and_its_modules() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, web::router::<()>()).await });

    for (path, ctype, body) in [
        ("/", "text/html; charset=utf-8", web::INDEX_HTML),
        ("/index.html", "text/html; charset=utf-8", web::INDEX_HTML),
        (
            "/client.js",
            "text/javascript; charset=utf-8",
            web::CLIENT_JS,
        ),
        (
            "/capture-worklet.js",
            "text/javascript; charset=utf-8",
            web::CAPTURE_WORKLET_JS,
        ),
        (
            "/playback-worklet.js",
            "text/javascript; charset=utf-8",
            web::PLAYBACK_WORKLET_JS,
        ),
    ] {
        let (status, content_type, got) = get(addr, path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(content_type, ctype, "{path}");
        assert_eq!(got, body, "{path}");
    }
    // The page imports ./client.js, which loads the worklets next to itself: all of them must be served above.
    assert!(web::INDEX_HTML.contains("from \"./client.js\""));
    assert!(web::CLIENT_JS.contains("new URL(\"capture-worklet.js\", base)"));
    assert!(web::CLIENT_JS.contains("new URL(\"playback-worklet.js\", base)"));

    let (status, _, _) = get(addr, "/nope.js").await;
    assert_eq!(status, 404);
    server.abort();
}
