//! Output shapes and renderers.
