//! Test guest `test-echo-mw`: a middleware that sees every request and
//! result (interests `*` both ways) and changes nothing, to measure hook
//! overhead. A request whose params hold `"__berth_test_deny": true` is
//! denied with status 418 and message `teapot`.

/// Whether the params ask for the test denial.
pub fn wants_denial(params: Option<&str>) -> bool {
    const KEY: &str = "__berth_test_deny";
    // Cheap check first: most params never mention the key.
    let Some(params) = params.filter(|p| p.contains(KEY)) else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(params)
        .ok()
        .and_then(|v| v.get(KEY).and_then(serde_json::Value::as_bool))
        .unwrap_or(false)
}

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit/deps/berth-plugin@0.1.0",
        world: "middleware-plugin",
    });

    use exports::berth::plugin::middleware::{Decision, Denial, Guest, InterestSet, Request};

    struct EchoMw;

    impl Guest for EchoMw {
        fn interests() -> InterestSet {
            InterestSet {
                requests: vec!["*".to_owned()],
                responses: vec!["*".to_owned()],
            }
        }

        fn on_request(req: Request) -> Decision {
            if crate::wants_denial(req.params.as_deref()) {
                return Decision::Deny(Denial {
                    status: 418,
                    message: "teapot".to_owned(),
                });
            }
            Decision::Allow
        }

        fn on_response(_req: Request, _result_json: String) -> Option<String> {
            None
        }
    }

    export!(EchoMw);
}

#[cfg(test)]
mod tests {
    use super::wants_denial;

    #[test]
    fn denial_flag() {
        let check = |params: Option<&str>, expect: bool| {
            assert_eq!(wants_denial(params), expect, "{params:?}")
        };
        check(None, false);
        check(Some(r#"{"name":"echo"}"#), false);
        check(Some(r#"{"name":"echo","__berth_test_deny":true}"#), true);
        check(Some(r#"{"__berth_test_deny":false}"#), false);
        check(Some(r#"{"__berth_test_deny":"true"}"#), false);
        check(Some(r#"{"arguments":{"__berth_test_deny":true}}"#), false);
    }
}
