use super::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn sniff_tells_versions_apart_and_replays_the_bytes() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    for (sent, want) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], Protocol::Http1),
        (H2_PREFACE, Protocol::Http2),
        (&b"P"[..], Protocol::Http1),
    ] {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let (s, _) = l.accept().await.unwrap();
        // The preface arrives in two pieces: sniffing waits for the rest.
        let (a, b) = sent.split_at(sent.len() / 2);
        c.write_all(a).await.unwrap();
        c.write_all(b).await.unwrap();
        if sent == b"P" {
            c.shutdown().await.unwrap();
        }
        let (mut io, got) = match sniff(s).await {
            Ok(r) => r,
            Err(e) => {
                assert_eq!(sent, b"P", "{e}");
                continue;
            }
        };
        assert_eq!(got, want);
        drop(c);
        let mut back = Vec::new();
        io.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, sent);
    }
}
