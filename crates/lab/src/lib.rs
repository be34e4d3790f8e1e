//! The checkout lab (being built).
