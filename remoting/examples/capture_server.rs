//! Interop probe: a fake NameServer + broker on one 127.0.0.1 port that logs every decoded
//! request and answers route, heartbeat and send requests well enough for a real client to
//! complete a send. `cargo run -p remoting --example capture_server -- <port> [advertised_addr]`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use remoting::body::{self, BrokerData, QueueData, TopicRouteData};
use remoting::codes::{request, response};
use remoting::headers::send::{
    SendMessageRequestHeader, SendMessageResponseHeader, MSG_REGION, TRACE_ON,
};
use remoting::{processor_fn, Dispatcher, RemotingCommand, RemotingServer, ServerConfig, Shutdown};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(19876);
    let addr = format!("127.0.0.1:{port}");
    let offset = Arc::new(AtomicI64::new(0));
    // Optional second argument: the broker address to advertise in routes (e.g. a proxy).
    let me = std::env::args().nth(2).unwrap_or_else(|| addr.clone());
    let mut d = Dispatcher::new();
    d.set_default(processor_fn(move |_ctx, req: RemotingCommand| {
        let me = me.clone();
        let offset = offset.clone();
        async move {
            let mut ext: Vec<_> = req.ext_fields.iter().collect();
            ext.sort();
            println!(
                "REQ code={} lang={:?} ver={} opaque={} flag={} type={:?} ext={:?} body={}",
                req.code,
                req.language,
                req.version,
                req.opaque,
                req.flag,
                req.serialize_type,
                ext,
                String::from_utf8_lossy(&req.body[..req.body.len().min(400)])
            );
            let resp = match req.code {
                request::GET_ROUTEINFO_BY_TOPIC => {
                    let mut b = BrokerData {
                        broker_name: "broker-a".into(),
                        cluster: "DefaultCluster".into(),
                        ..Default::default()
                    };
                    b.broker_addrs.insert(0, me.clone());
                    let route = TopicRouteData {
                        broker_datas: vec![b],
                        queue_datas: vec![QueueData {
                            broker_name: "broker-a".into(),
                            perm: 6,
                            read_queue_nums: 4,
                            write_queue_nums: 4,
                            topic_sys_flag: 0,
                        }],
                        ..Default::default()
                    };
                    RemotingCommand::response_to(&req, response::SUCCESS)
                        .with_body(body::fastjson::topic_route_data(&route))
                }
                request::SEND_MESSAGE | request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE => {
                    let h = SendMessageRequestHeader::decode_any(&req)?;
                    println!("  send header: {h:?}");
                    let off = offset.fetch_add(1, Ordering::Relaxed);
                    RemotingCommand::response_to(&req, response::SUCCESS)
                        .with_header(&SendMessageResponseHeader {
                            msg_id: format!("7F000001{:08X}{:016X}", port as u32, off),
                            queue_id: h.queue_id.max(0),
                            queue_offset: off,
                            ..Default::default()
                        })
                        .with_ext(MSG_REGION, "DefaultRegion")
                        .with_ext(TRACE_ON, "false")
                }
                _ => RemotingCommand::response_to(&req, response::SUCCESS),
            };
            Ok(Some(resp))
        }
    }));
    let server = RemotingServer::bind(addr.parse()?, ServerConfig::default(), d).await?;
    println!("listening on {}", server.local_addr());
    server.run(Shutdown::new()).await;
    Ok(())
}
