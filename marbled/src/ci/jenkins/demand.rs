//! Jenkins demand: the build queue's buildable items, with the label taken from the `why`
//! text (the queue API has no label field; [`super::label_from_why`]). Reported in the
//! log and in metrics; SPI VMs are still started only through `request-slot`.

use std::collections::BTreeMap;

use super::client::QueueItem;

/// Buildable items by label (`None`: the `why` named no label), each with the oldest
/// item's queue time (unix ms).
pub fn buildable_by_label(items: &[QueueItem]) -> BTreeMap<Option<String>, (u64, u64)> {
    let mut out: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for item in items.iter().filter(|i| i.buildable) {
        let e = out.entry(item.label.clone()).or_insert((0, u64::MAX));
        e.0 += 1;
        e.1 = e.1.min(item.in_queue_since);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: u64, buildable: bool, label: Option<&str>, since: u64) -> QueueItem {
        QueueItem {
            id,
            why: String::new(),
            buildable,
            blocked: !buildable,
            stuck: false,
            in_queue_since: since,
            task: "t".into(),
            label: label.map(str::to_owned),
        }
    }

    #[test]
    fn only_buildable_items_count_grouped_by_label() {
        let items = [
            item(1, true, Some("macos"), 50),
            item(2, true, Some("macos"), 20),
            item(3, false, Some("macos"), 10),
            item(4, true, None, 5),
        ];
        let by = buildable_by_label(&items);
        assert_eq!(by.get(&Some("macos".to_owned())), Some(&(2, 20)));
        assert_eq!(by.get(&None), Some(&(1, 5)));
    }
}
