//! A plugin that tries to reach the network from its score hook.

use crm_sdk::{Context, Customer, Plugin, Score};

#[derive(Default)]
struct Sockets;

impl Plugin for Sockets {
    fn score(&self, _model: &str, _customer: &Customer, _ctx: &Context) -> Result<Score, String> {
        let connected = std::net::TcpStream::connect("127.0.0.1:9").is_ok();
        Ok(Score::new(if connected { 1.0 } else { 0.0 }, "network"))
    }
}

crm_sdk::export_plugin!(Sockets);
