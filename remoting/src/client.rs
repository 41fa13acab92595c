//! Request/response client with timeouts, used by namesrv-client, tests and the benchmark.
//!
//! API (implementation lands with the remoting work):
//! ```ignore
//! let client = RemotingClient::connect(addr, ClientConfig::default()).await?;
//! let resp = client.invoke(cmd, timeout_ms).await?;   // opaque assigned by the client
//! client.invoke_oneway(cmd).await?;
//! client.set_request_handler(handler)                 // server->client requests
//! ```
