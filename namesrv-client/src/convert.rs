//! Conversions from the `remoting::body` copies of the same Java beans, so a broker that
//! keeps its topic table in `remoting::body` types can build a [`BrokerRegistration`]
//! without re-encoding JSON.
//!
//! [`BrokerRegistration`]: crate::client::BrokerRegistration

use remoting::body as rb;

use crate::body::{DataVersion, TopicConfig, TopicConfigSerializeWrapper, TopicFilterType};

impl From<&rb::DataVersion> for DataVersion {
    fn from(v: &rb::DataVersion) -> Self {
        DataVersion {
            counter: v.counter,
            state_version: v.state_version,
            timestamp: v.timestamp,
        }
    }
}

impl From<&rb::TopicConfig> for TopicConfig {
    fn from(t: &rb::TopicConfig) -> Self {
        TopicConfig {
            attributes: t.attributes.clone(),
            order: t.order,
            perm: t.perm,
            read_queue_nums: t.read_queue_nums,
            // Java knows only these two; anything else is treated as the default.
            topic_filter_type: TopicFilterType::from_name(&t.topic_filter_type).unwrap_or_default(),
            topic_name: t.topic_name.clone(),
            topic_sys_flag: t.topic_sys_flag,
            write_queue_nums: t.write_queue_nums,
        }
    }
}

impl From<&rb::TopicConfigSerializeWrapper> for TopicConfigSerializeWrapper {
    fn from(w: &rb::TopicConfigSerializeWrapper) -> Self {
        TopicConfigSerializeWrapper {
            data_version: (&w.data_version).into(),
            topic_config_table: w
                .topic_config_table
                .iter()
                .map(|(name, tc)| (name.clone(), tc.into()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapper_converts_field_by_field() {
        let mut w = rb::TopicConfigSerializeWrapper::default();
        w.data_version.counter = 7;
        w.data_version.timestamp = 9;
        let tc = rb::TopicConfig {
            topic_name: "T".into(),
            topic_filter_type: "MULTI_TAG".into(),
            read_queue_nums: 3,
            write_queue_nums: 5,
            perm: 4,
            topic_sys_flag: 1,
            order: true,
            ..Default::default()
        };
        w.topic_config_table.insert("T".into(), tc);
        let ours: TopicConfigSerializeWrapper = (&w).into();
        assert_eq!(ours.data_version, DataVersion::new(9, 7));
        let t = &ours.topic_config_table["T"];
        assert_eq!(t.topic_filter_type, TopicFilterType::MultiTag);
        assert_eq!(
            (
                t.read_queue_nums,
                t.write_queue_nums,
                t.perm,
                t.topic_sys_flag
            ),
            (3, 5, 4, 1)
        );
        assert!(t.order);
        // Both encode to the same JSON (both follow fastjson's member order).
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&w).unwrap()
        );
    }
}
