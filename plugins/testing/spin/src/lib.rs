//! Test guest `test-spin`: a middleware whose `on-request` loops forever,
//! for the host's epoch/fuel interruption tests. Interests: every request.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit/deps/berth-plugin@0.1.0",
        world: "middleware-plugin",
    });

    use exports::berth::plugin::middleware::{Decision, Guest, InterestSet, Request};

    struct Spin;

    impl Guest for Spin {
        fn interests() -> InterestSet {
            InterestSet {
                requests: vec!["*".to_owned()],
                responses: vec!["*".to_owned()],
            }
        }

        fn on_request(_req: Request) -> Decision {
            let mut n: u64 = 0;
            loop {
                // `black_box` keeps the loop from being optimised away.
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }

        fn on_response(_req: Request, _result_json: String) -> Option<String> {
            loop {
                std::hint::black_box(());
            }
        }
    }

    export!(Spin);
}
