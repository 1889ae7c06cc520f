//! The DNS authority: a hickory `RequestHandler` answering from the current index snapshot,
//! and the UDP/TCP listeners that feed it.

mod cache;
mod fast;
mod forward;
mod handler;
mod reference;
mod rrl;
mod server;
mod tcp;
mod udp;
mod wire;

pub use udp::{Capture, encode, encode_udp};
/// The section walker the listeners and the rate limiter use, for the `fast` fuzz target.
pub use wire::{Layout, layout, truncate_to_slip};

pub use forward::{ForwardError, Forwarded, Forwarder};
pub use handler::{Authority, Scratch};
pub use reference::hickory_answer;
pub use rrl::{Rrl, RrlConfig};
pub use server::{DnsServer, ListenerConfig};
