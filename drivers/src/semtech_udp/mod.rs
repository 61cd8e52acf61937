//! Semtech UDP packet-forwarder protocol (GWMP v1/v2): codec and backend task.
