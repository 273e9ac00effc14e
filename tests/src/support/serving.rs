//! `crm serve` on a loopback socket, and plain HTTP/1.1 requests to it.

use generate::Industry;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use crate::support::*;

/// One HTTP/1.1 GET over a socket; the status line and body.
pub(crate) fn get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// A retail store of `customers` in `DIR/store`, and a token of `role` made
/// by `crm token create`.
pub(crate) fn store_with_token(customers: u32, role: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    import(&*open_store(&db), &dataset(Industry::Retail, customers, 3)).unwrap();
    let out = crm(&[
        "token",
        "create",
        "--db",
        db.to_str().unwrap(),
        "--role",
        role,
        "--name",
        role,
    ]);
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (dir, token)
}

/// `crm serve` on a free loopback port: the process, its log and its address.
pub(crate) fn serve(
    db: &str,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStderr>,
    String,
) {
    let mut child = Command::new(crm_bin())
        .args(["serve", "--db", db, "--addr", "127.0.0.1:0"])
        .env_remove("CRM_DB")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().split(" on http://").nth(1)
            && line.starts_with("serving")
        {
            let addr = rest.to_owned();
            return (child, stderr, addr);
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("crm serve did not print its address");
}

/// One HTTP/1.1 POST of a JSON body over a socket; the status code, or 0
/// when no answer came (the server was killed, or is gone).
pub(crate) fn post(addr: &str, path: &str, token: &str, body: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    let sent = write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut response = String::new();
    if sent.is_err() || stream.read_to_string(&mut response).is_err() {
        return 0;
    }
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
