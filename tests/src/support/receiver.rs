//! A webhook receiver on a loopback port.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;

/// A webhook receiver on a loopback port: answers 500 to the first request
/// and 200 to the rest, and keeps each request's headers and body.
/// A request as received: its headers (names lowercased) and body.
pub(crate) type Received = (Vec<(String, String)>, String);

pub(crate) struct Receiver {
    pub(crate) url: String,
    pub(crate) got: Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&got);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    headers.push((k.trim().to_lowercase(), v.trim().to_owned()));
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                kept.lock()
                    .unwrap()
                    .push((headers, String::from_utf8(body).unwrap()));
                let status = if n == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
            }
        });
        Receiver { url, got }
    }

    /// Waits for a delivered request whose body holds `text`.
    pub(crate) fn wait_for(&self, text: &str) -> Received {
        for _ in 0..400 {
            let got = self.got.lock().unwrap();
            // The first request of all was answered 500: not delivered.
            if let Some(hit) = got.iter().skip(1).find(|(_, b)| b.contains(text)) {
                return hit.clone();
            }
            drop(got);
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!(
            "no webhook delivery with {text}: {:?}",
            self.got.lock().unwrap()
        );
    }
}
