pub mod cache;
pub mod lookup;
pub mod phone;
pub mod record;
pub mod synth;
