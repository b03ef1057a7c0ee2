//! Admin API bodies never panic the conversion to core types: any JSON that
//! deserializes as a command batch is converted (or refused) for every command.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvs_api::{key_of, Command, CommandBatch};

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = serde_json::from_slice::<CommandBatch>(data) else {
        return;
    };
    for cmd in &batch.commands {
        match cmd {
            Command::AddService { spec } | Command::EditService { spec } => {
                let _ = spec.to_core();
            }
            Command::AddServer { service, server } | Command::EditServer { service, server } => {
                let _ = server.to_core(&key_of(service));
            }
            _ => {}
        }
    }
});
