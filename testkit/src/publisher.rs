//! A blocking MQTT client that publishes commands as the network server would.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Publishes at QoS 1 on the broker at a port; disconnects on drop.
pub struct Publisher {
    client: rumqttc::Client,
    stop: Arc<AtomicBool>,
}

impl Publisher {
    /// Connect (the connection is driven by a thread that ends on drop).
    pub fn connect(port: u16) -> Publisher {
        let mut opts = rumqttc::MqttOptions::new(
            format!("test-ns-{}", rand::random::<u32>()),
            "127.0.0.1",
            port,
        );
        // Large enough for the hostile-command tests (1 MB payloads).
        opts.set_max_packet_size(4 << 20, 4 << 20);
        let (client, mut conn) = rumqttc::Client::new(opts, 16);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            for event in conn.iter() {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                if event.is_err() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        Publisher { client, stop }
    }

    /// Queue `payload` for `topic` (QoS 1, not retained).
    pub fn publish(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .expect("publish");
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect();
    }
}
