//! The errors of the packet plane's kernel side (loading, attaching, maps,
//! test runs). Every message names what failed: the program, the interface or
//! the map and the operation. aya's errors are boxed to keep `Result`s small.

use aya::maps::{xdp::XdpMapError, MapError};
use aya::programs::ProgramError;
use aya::EbpfError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum XdpError {
    #[error("loading the XDP object: {0}")]
    Object(#[source] Box<EbpfError>),

    #[error("the XDP object has no XDP program `{0}`")]
    NoProgram(&'static str),

    #[error("program `{program}`: {action}: {source}")]
    Program {
        program: &'static str,
        action: String,
        #[source]
        source: Box<ProgramError>,
    },

    #[error("the XDP object has no map `{0}`")]
    NoMap(&'static str),

    #[error("map `{map}` does not have the type or sizes of the ABI: {source}")]
    MapLayout {
        map: &'static str,
        #[source]
        source: Box<MapError>,
    },

    #[error("map `{map}`: {op} failed: {source}")]
    Map {
        map: &'static str,
        op: &'static str,
        #[source]
        source: Box<MapError>,
    },

    #[error("map `{map}`: {op} failed: {source}")]
    DevMap {
        map: &'static str,
        op: &'static str,
        #[source]
        source: Box<XdpMapError>,
    },

    #[error("map `{map}`: {op} failed: {source}")]
    MapBatch {
        map: &'static str,
        op: &'static str,
        #[source]
        source: Box<rvs_sys::SysError>,
    },

    #[error("map `{map}`: index range {start}..{end} is outside 0..{max}")]
    OutOfRange {
        map: &'static str,
        start: u64,
        end: u64,
        max: u32,
    },

    #[error("test run of `{program}` returned {size} bytes of frame, more than the {cap} bytes of the output buffer")]
    TestRunOutput {
        program: &'static str,
        size: usize,
        cap: usize,
    },
}
