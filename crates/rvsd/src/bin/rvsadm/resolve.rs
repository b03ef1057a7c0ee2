//! Name resolution through glibc, exactly as ipvsadm does it: gethostbyname /
//! gethostbyaddr for hosts, getservbyname / getservbyport for ports, so that
//! /etc/hosts, /etc/services and nsswitch.conf give rvsadm the same names.
//!
//! This is the crate's one unsafe edge. Each call copies the answer out of glibc's
//! static buffer before returning; rvsadm is single-threaded, so nothing else can
//! overwrite that buffer meanwhile.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::net::{IpAddr, Ipv4Addr};

use rvs_ipvsadm::{Proto, Resolver};

extern "C" {
    fn gethostbyname(name: *const libc::c_char) -> *mut libc::hostent;
    fn gethostbyaddr(
        addr: *const libc::c_void,
        len: libc::socklen_t,
        family: libc::c_int,
    ) -> *mut libc::hostent;
}

/// The system's resolver.
pub struct Glibc;

fn proto_name(p: Proto) -> Option<&'static CStr> {
    match p {
        Proto::Tcp => Some(c"tcp"),
        Proto::Udp => Some(c"udp"),
        Proto::Sctp => Some(c"sctp"),
        Proto::Other => None,
    }
}

impl Resolver for Glibc {
    fn host_to_addr(&self, name: &str) -> Option<Ipv4Addr> {
        let c = CString::new(name).ok()?;
        // SAFETY: `c` is a valid NUL-terminated string; the result is checked for
        // NULL and read (type, length, first address) before any other libc call.
        unsafe {
            let h = gethostbyname(c.as_ptr());
            if h.is_null() || (*h).h_addrtype != libc::AF_INET || (*h).h_length != 4 {
                return None;
            }
            let list = (*h).h_addr_list;
            if list.is_null() || (*list).is_null() {
                return None;
            }
            let bytes = std::slice::from_raw_parts((*list) as *const u8, 4);
            Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        }
    }

    fn addr_to_host(&self, addr: IpAddr) -> Option<String> {
        let (bytes, family): (Vec<u8>, libc::c_int) = match addr {
            IpAddr::V4(a) => (a.octets().to_vec(), libc::AF_INET),
            IpAddr::V6(a) => (a.octets().to_vec(), libc::AF_INET6),
        };
        // SAFETY: `bytes` outlives the call and its length is passed; the returned
        // name is copied before any other libc call.
        unsafe {
            let h = gethostbyaddr(
                bytes.as_ptr().cast(),
                bytes.len() as libc::socklen_t,
                family,
            );
            if h.is_null() || (*h).h_name.is_null() {
                return None;
            }
            Some(CStr::from_ptr((*h).h_name).to_string_lossy().into_owned())
        }
    }

    fn service_to_port(&self, name: &str, proto: Proto) -> Option<u16> {
        let p = proto_name(proto)?;
        let c = CString::new(name).ok()?;
        // SAFETY: both strings are NUL-terminated and live across the call; the
        // port is read before any other libc call.
        unsafe {
            let s = libc::getservbyname(c.as_ptr(), p.as_ptr());
            if s.is_null() {
                return None;
            }
            Some(u16::from_be((*s).s_port as u16))
        }
    }

    fn port_to_service(&self, port: u16, proto: Proto) -> Option<String> {
        let p = proto_name(proto)?;
        // SAFETY: `p` is NUL-terminated and static; the name is copied before any
        // other libc call.
        unsafe {
            let s = libc::getservbyport(libc::c_int::from(port.to_be()), p.as_ptr());
            if s.is_null() || (*s).s_name.is_null() {
                return None;
            }
            Some(CStr::from_ptr((*s).s_name).to_string_lossy().into_owned())
        }
    }
}
