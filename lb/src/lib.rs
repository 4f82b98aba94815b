//! The EdgeFleet balancer library (in progress).
