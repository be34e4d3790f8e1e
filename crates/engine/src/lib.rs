//! Load engine.
