//! Offsets of named streams: `<generation>_<position>`, both as 16 decimal digits. Fixed
//! width, so they sort as strings as they do as numbers (the protocol asks for lexicographic
//! order); the generation (strictly increasing for a name, cluster-wide, from the directory)
//! makes every offset of a deleted or lost stream sort before the offsets of its successor,
//! which answers them 410 instead of someone else's data.

use oort_common::cluster::NamedPosition;

/// The offset after `position` messages of generation `generation`.
pub(crate) fn format(generation: u64, position: u64) -> String {
    format!("{generation:016}_{position:016}")
}

/// Reads an `offset` parameter: `-1`, `now`, or an offset this server minted (any digits
/// around one `_`; fixed width is how they are minted, not a requirement).
pub(crate) fn parse(text: &str) -> Option<NamedPosition> {
    match text {
        "-1" => return Some(NamedPosition::Start),
        "now" => return Some(NamedPosition::Now),
        _ => {}
    }
    let (generation, position) = text.split_once('_')?;
    let number = |part: &str| {
        (!part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u64>().ok())
            .flatten()
    };
    Some(NamedPosition::At {
        generation: number(generation)?,
        position: number(position)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_sort_as_numbers() {
        assert_eq!(
            parse(&format(3, 42)),
            Some(NamedPosition::At {
                generation: 3,
                position: 42
            })
        );
        assert!(format(1, 9) < format(1, 10));
        assert!(format(1, u64::MAX) < format(2, 0));
        for bad in [
            "", "1", "1_", "_1", "a_1", "1_2_3", "1,2", " 1_2", "../1_2", "1_2\n",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse("-1"), Some(NamedPosition::Start));
        assert_eq!(parse("now"), Some(NamedPosition::Now));
    }
}
