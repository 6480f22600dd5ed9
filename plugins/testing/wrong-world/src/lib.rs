//! Test guest `test-wrong-world`: a component of the registry-source world
//! (no `middleware` export), for the host test that loads it as a
//! middleware and expects a clear refusal.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../../wit/deps/berth-plugin@0.1.0",
        world: "registry-source-plugin",
    });

    use berth::plugin::types::PluginError;
    use exports::berth::plugin::registry_source::{Guest, ListRequest, Page, Server};

    struct WrongWorld;

    impl Guest for WrongWorld {
        fn list(_req: ListRequest) -> Result<Page, PluginError> {
            Ok(Page {
                servers: Vec::new(),
                next_cursor: None,
            })
        }

        fn get(name: String) -> Result<Server, PluginError> {
            Err(PluginError::NotFound(name))
        }
    }

    export!(WrongWorld);
}
