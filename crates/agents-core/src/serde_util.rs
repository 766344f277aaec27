//! Serde helpers: durations and timestamps as floating-point seconds, the form used on the wire and in logs.

/// `Duration` as `f64` seconds.
pub mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serializes as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    /// Deserializes from non-negative finite seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

/// `Option<Duration>` as optional `f64` seconds.
pub mod opt_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Serializes as seconds or null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from optional non-negative finite seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(v) => Duration::try_from_secs_f64(v)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// `SystemTime` as `f64` seconds since the Unix epoch.
pub mod unix_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// Seconds since the epoch (negative before it).
    pub fn to_f64(t: SystemTime) -> f64 {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }

    /// The time `secs` seconds after the epoch; `None` when not representable.
    pub fn from_f64(secs: f64) -> Option<SystemTime> {
        if secs >= 0.0 {
            UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
        } else {
            UNIX_EPOCH.checked_sub(Duration::try_from_secs_f64(-secs).ok()?)
        }
    }

    /// Serializes as seconds since the epoch.
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(to_f64(*t))
    }

    /// Deserializes from seconds since the epoch.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let v = f64::deserialize(d)?;
        from_f64(v).ok_or_else(|| serde::de::Error::custom("timestamp out of range"))
    }
}

/// `Option<SystemTime>` as optional `f64` seconds since the Unix epoch.
pub mod opt_unix_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    /// Serializes as seconds since the epoch, or null.
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::unix_secs::to_f64(*t)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from optional seconds since the epoch.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        match Option::<f64>::deserialize(d)? {
            Some(v) => super::unix_secs::from_f64(v)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom("timestamp out of range")),
            None => Ok(None),
        }
    }
}
