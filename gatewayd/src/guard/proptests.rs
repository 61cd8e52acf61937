//! Property tests: whatever the guard approves is legal, and the duty-cycle budget holds in
//! every one-hour window of a random sequence over hours of simulated time.
