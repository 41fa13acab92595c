//! `namesrv --listen 127.0.0.1:9876`

use std::net::SocketAddr;

use clap::Parser;
use namesrv::{NameServer, NamesrvConfig};
use remoting::shutdown::Shutdown;

#[derive(Parser, Debug)]
#[command(name = "namesrv", about = "RocketMQ-compatible NameServer")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9876")]
    listen: SocketAddr,
    /// Drop a broker that has not registered for this long.
    #[arg(long, default_value_t = namesrv::config::DEFAULT_BROKER_EXPIRY_MS)]
    broker_expiry_ms: u64,
    /// Period of the broker expiry scan.
    #[arg(long, default_value_t = namesrv::config::DEFAULT_SCAN_INTERVAL_MS)]
    scan_interval_ms: u64,
    /// Put `orderTopicConf` (KV namespace ORDER_TOPIC_CONFIG) into route data.
    #[arg(long)]
    order_message_enable: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let config = NamesrvConfig {
        broker_expiry_ms: args.broker_expiry_ms,
        scan_interval_ms: args.scan_interval_ms,
        order_message_enable: args.order_message_enable,
        ..NamesrvConfig::default()
    };
    let shutdown = Shutdown::new();
    let handle = match NameServer::start(args.listen, config, shutdown.clone()).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("namesrv: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("namesrv listening on {}", handle.local_addr());
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("namesrv: cannot wait for ctrl-c: {e}");
    }
    shutdown.trigger();
    handle.join().await;
    std::process::ExitCode::SUCCESS
}
