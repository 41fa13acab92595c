//! Quick request/response throughput check on 127.0.0.1 (not a benchmark suite):
//! `cargo run -p remoting --example echo_bench -- [requests] [concurrency] [body_bytes]`.

use std::time::Instant;

use remoting::codes::response;
use remoting::{
    processor_fn, ClientConfig, Dispatcher, RemotingClient, RemotingCommand, RemotingServer,
    ServerConfig, Shutdown,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(50_000);
    let concurrency = args.get(1).copied().unwrap_or(64).max(1);
    let body_bytes = args.get(2).copied().unwrap_or(128);

    let mut d = Dispatcher::new();
    d.register(
        1000,
        processor_fn(|_ctx, req: RemotingCommand| async move {
            Ok(Some(
                RemotingCommand::response_to(&req, response::SUCCESS).with_body(req.body.clone()),
            ))
        }),
    );
    let server = RemotingServer::bind("127.0.0.1:0".parse()?, ServerConfig::default(), d).await?;
    let addr = server.local_addr();
    let shutdown = Shutdown::new();
    tokio::spawn(server.run(shutdown.clone()));
    let client = RemotingClient::connect(&addr.to_string(), ClientConfig::default()).await?;

    let body = bytes::Bytes::from(vec![7u8; body_bytes]);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let client = client.clone();
        let body = body.clone();
        let n = requests / concurrency + usize::from(w < requests % concurrency);
        tasks.push(tokio::spawn(async move {
            for _ in 0..n {
                let req = RemotingCommand::request(1000).with_body(body.clone());
                let resp = client.invoke(req, 10_000).await?;
                assert_eq!(resp.body.len(), body.len());
            }
            Ok::<_, remoting::RemotingError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{requests} requests, concurrency {concurrency}, body {body_bytes} B: {:.0} req/s",
        requests as f64 / secs
    );
    shutdown.trigger();
    Ok(())
}
