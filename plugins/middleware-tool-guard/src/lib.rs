//! berth middleware plugin `tool-guard`: refuses calls to denied MCP tools,
//! hides them from `tools/list`, and redacts configured patterns from tool
//! output. See README.md for the configuration.
//!
//! The rules live in [`guard`] and [`glob`] (plain Rust, tested natively);
//! the `component` module binds them to the `middleware-plugin` world and
//! is only compiled for wasm32.

pub mod glob;
pub mod guard;

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../wit/deps/berth-plugin@0.1.0",
        world: "middleware-plugin",
    });

    use std::sync::OnceLock;

    use berth::plugin::host::{self, Level};
    use exports::berth::plugin::middleware::{Decision, Denial, Guest, InterestSet, Request};

    use crate::guard::{Guard, Verdict};

    /// The message clients see while the configuration is invalid.
    const INVALID_CONFIG: &str =
        "tool-guard plugin configuration is invalid; every request is refused (see berth's log)";

    /// The parsed configuration, once per instance. `Err` fails closed.
    fn guard() -> Result<&'static Guard, ()> {
        static GUARD: OnceLock<Result<Guard, ()>> = OnceLock::new();
        GUARD
            .get_or_init(|| {
                Guard::from_json(&host::config()).map_err(|err| {
                    host::log(Level::Error, &format!("tool-guard: {err}"));
                })
            })
            .as_ref()
            .map_err(|&()| ())
    }

    struct ToolGuard;

    impl Guest for ToolGuard {
        fn interests() -> InterestSet {
            match guard() {
                Ok(guard) => {
                    let mut responses = vec!["tools/list".to_owned()];
                    if guard.redacts() {
                        responses.push("tools/call".to_owned());
                    }
                    InterestSet {
                        requests: vec!["tools/call".to_owned()],
                        responses,
                    }
                }
                // Fail closed: see every request so every one is refused.
                Err(()) => InterestSet {
                    requests: vec!["*".to_owned()],
                    responses: Vec::new(),
                },
            }
        }

        fn on_request(req: Request) -> Decision {
            let Ok(guard) = guard() else {
                return Decision::Deny(Denial {
                    status: 500,
                    message: INVALID_CONFIG.to_owned(),
                });
            };
            if req.method != "tools/call" {
                return Decision::Allow;
            }
            match guard.check_call(req.params.as_deref()) {
                Verdict::Allow => Decision::Allow,
                Verdict::Deny { status, message } => Decision::Deny(Denial { status, message }),
            }
        }

        fn on_response(req: Request, result_json: String) -> Option<String> {
            let guard = guard().ok()?;
            match req.method.as_str() {
                "tools/list" => guard.filter_tools_list(&result_json),
                "tools/call" => guard.redact_call_result(&result_json),
                _ => None,
            }
        }
    }

    export!(ToolGuard);
}
