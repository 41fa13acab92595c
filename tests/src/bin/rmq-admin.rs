//! `rmq-admin`: a tiny admin/debug CLI over the harness's blocking remoting client.
//!
//! ```text
//! rmq-admin create-topic  BROKER_ADDR TOPIC [QUEUES=4]
//! rmq-admin max-offset    BROKER_ADDR TOPIC [QUEUES=4]
//! rmq-admin consumer-offset BROKER_ADDR GROUP TOPIC [QUEUES=4]
//! rmq-admin query         BROKER_ADDR TOPIC KEY [--uniq]
//! rmq-admin view          BROKER_ADDR COMMITLOG_OFFSET
//! rmq-admin route         NAMESRV_ADDR TOPIC
//! rmq-admin cluster       NAMESRV_ADDR
//! rmq-admin runtime-info  BROKER_ADDR       (one `key=value` per line)
//! ```

use std::process::ExitCode;

use tests::admin::{AdminClient, DEFAULT_TIMEOUT_MS};
use tests::record::Record;

const USAGE: &str = "usage: rmq-admin (create-topic|max-offset) BROKER TOPIC [QUEUES] | \
consumer-offset BROKER GROUP TOPIC [QUEUES] | query BROKER TOPIC KEY [--uniq] | \
view BROKER OFFSET | route NAMESRV TOPIC | cluster NAMESRV | runtime-info BROKER";

fn show(r: &Record) {
    println!(
        "{} size={} sysFlag={:#x} topic={} queue={} queueOffset={} commitLogOffset={} reconsume={} born={} store={} \
         props={:?} body={:?}",
        r.offset_msg_id(),
        r.total_size,
        r.sys_flag,
        r.topic,
        r.queue_id,
        r.queue_offset,
        r.physical_offset,
        r.reconsume_times,
        r.born_host,
        r.store_host,
        r.properties,
        r.body_str()
    );
}

fn run(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| -> Result<&str, String> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| USAGE.to_string())
    };
    let queues = |i: usize| -> Result<i32, String> {
        args.get(i)
            .map(|s| s.parse().map_err(|e| format!("queues: {e}")))
            .unwrap_or(Ok(4))
    };
    let mut c = AdminClient::connect(arg(1)?, DEFAULT_TIMEOUT_MS).map_err(|e| e.to_string())?;
    match arg(0)? {
        "create-topic" => {
            c.create_topic(arg(2)?, queues(3)?)
                .map_err(|e| e.to_string())?;
            println!("created {}", arg(2)?);
        }
        "max-offset" => {
            for q in 0..queues(3)? {
                let o = c.max_offset(arg(2)?, q).map_err(|e| e.to_string())?;
                println!("queue {q}: {o}");
            }
        }
        "consumer-offset" => {
            for q in 0..queues(4)? {
                let o = c
                    .consumer_offset(arg(2)?, arg(3)?, q)
                    .map_err(|e| e.to_string())?;
                println!("queue {q}: {o:?}");
            }
        }
        "query" => {
            let uniq = args.iter().any(|a| a == "--uniq");
            let recs = c
                .query_message(arg(2)?, arg(3)?, 32, uniq)
                .map_err(|e| e.to_string())?;
            recs.iter().for_each(show);
        }
        "view" => {
            let off: i64 = arg(2)?.parse().map_err(|e| format!("offset: {e}"))?;
            show(&c.view_message(off).map_err(|e| e.to_string())?);
        }
        "route" => println!("{:?}", c.route(arg(2)?).map_err(|e| e.to_string())?),
        "cluster" => println!("{}", c.cluster_info().map_err(|e| e.to_string())?),
        "runtime-info" => {
            for (k, v) in c.runtime_info().map_err(|e| e.to_string())? {
                println!("{k}={}", v.as_str().unwrap_or_default());
            }
        }
        _ => return Err(USAGE.to_string()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rmq-admin: {e}");
            ExitCode::FAILURE
        }
    }
}
