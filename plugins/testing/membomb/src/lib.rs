//! Test guest `test-membomb`: a middleware whose `on-request` allocates
//! and touches 1 MiB chunks until an allocation fails (the guest then
//! aborts: a trap), for the host's memory-limit tests. Interests: every
//! request.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit/deps/berth-plugin@0.1.0",
        world: "middleware-plugin",
    });

    use exports::berth::plugin::middleware::{Decision, Guest, InterestSet, Request};

    const CHUNK: usize = 1024 * 1024;

    struct MemBomb;

    impl Guest for MemBomb {
        fn interests() -> InterestSet {
            InterestSet {
                requests: vec!["*".to_owned()],
                responses: Vec::new(),
            }
        }

        fn on_request(_req: Request) -> Decision {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; CHUNK];
                // Touch every page so the memory is really used.
                for page in chunk.chunks_mut(4096) {
                    page[0] = 1;
                }
                chunks.push(std::hint::black_box(chunk));
            }
        }

        fn on_response(_req: Request, _result_json: String) -> Option<String> {
            None
        }
    }

    export!(MemBomb);
}
