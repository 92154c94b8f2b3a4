//! `responder_probe`: a test fixture responder. The delivery's JSON body picks what it does:
//! `{"do": "answer"}` answers 201 with a JSON echo of the hook, method, trace tag and body;
//! `"skip"` answers 200 without storing the delivery; `"loop"` spins until the deadline;
//! `"trap"` panics; `"fail"` returns an error; `"bad_status"` answers status 42.

use std::hint::black_box;

use stormhook_sdk::responder::{Request, Response};
use stormhook_sdk::serde_json::{Value, json};
use stormhook_sdk::{Error, Responder};

/// The responder.
pub struct Probe;

impl Responder for Probe {
    fn respond(request: &Request) -> Result<Response, Error> {
        let body: Value =
            stormhook_sdk::serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        match body["do"].as_str().unwrap_or("answer") {
            "skip" => Ok(Response::text("not stored").without_storing()),
            "loop" => {
                let mut counter = 0u64;
                loop {
                    counter = black_box(counter.wrapping_add(1));
                }
            }
            "trap" => panic!("the probe traps on purpose"),
            "fail" => Err(Error::upstream("the probe fails on purpose")),
            "bad_status" => Ok(Response::text("?").with_status(42)),
            _ => Ok(Response::json(&json!({
                "hook": request.hook,
                "method": request.method,
                "query": request.query,
                "trace_tag": request.trace_tag,
                "body": body,
                "signature_header": request.header("x-hub-signature-256").is_some(),
            }))?
            .with_status(201)),
        }
    }
}

stormhook_sdk::export_responder!(Probe);
