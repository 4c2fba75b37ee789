//! Offline administration of a data directory.
