//! RESP2/RESP3 frames: parsing and encoding.
