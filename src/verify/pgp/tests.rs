//! Tests of the OpenPGP verifier.
