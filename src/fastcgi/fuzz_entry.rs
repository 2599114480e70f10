//! The entry point of the `fastcgi_records` fuzz target (`fuzz/`), kept in the library so
//! that a unit test replays its committed corpus through exactly the code the fuzzer
//! runs. It panics when an invariant breaks.

use super::{Decoder, Event, FastCgiError};

/// The record decoder: the input fed whole, then one byte at a time, must give the same
/// events and the same error; and name-value pairs cut from the input must come back
/// the same through [`super::params`] and [`super::decode_params`].
pub fn fastcgi_records(data: &[u8]) {
    let whole = decode_in_reads(data, data.len().max(1));
    let bytewise = decode_in_reads(data, 1);
    assert_eq!(whole, bytewise);
    params_round_trip(data);
}

/// Every event `data` decodes to when fed in reads of `read_size` bytes, and the error
/// that stopped the decoder, if one did.
pub fn decode_in_reads(data: &[u8], read_size: usize) -> (Vec<Event>, Option<FastCgiError>) {
    let mut decoder = Decoder::new();
    let mut events = Vec::new();
    for read in data.chunks(read_size) {
        decoder.push(read);
        loop {
            match decoder.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(error) => return (merge_streams(events), Some(error)),
            }
        }
    }
    (merge_streams(events), None)
}

/// Adjacent pieces of one stream put together: how the bytes were cut into records is
/// not part of what they say.
fn merge_streams(events: Vec<Event>) -> Vec<Event> {
    let mut merged: Vec<Event> = Vec::new();
    for event in events {
        match (merged.last_mut(), event) {
            (Some(Event::Stdout(previous)), Event::Stdout(more))
            | (Some(Event::Stderr(previous)), Event::Stderr(more)) => {
                let mut joined = previous.to_vec();
                joined.extend_from_slice(&more);
                *previous = joined.into();
            }
            (_, event) => merged.push(event),
        }
    }
    merged
}

/// Pairs cut from `data` (each name and value as long as the byte before it says, modulo
/// what is left), encoded into records and read back.
fn params_round_trip(data: &[u8]) {
    let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
    let mut rest = data;
    while let Some((&length, tail)) = rest.split_first() {
        let cut = usize::from(length).min(tail.len());
        let (name, tail) = tail.split_at(cut / 2);
        let (value, tail) = tail.split_at(cut - cut / 2);
        pairs.push((name, value));
        rest = tail;
    }
    let mut encoded = Vec::new();
    super::params(&mut encoded, pairs.iter().copied());
    let content = params_content(&encoded);
    let decoded = super::decode_params(&content).expect("our own pairs decode");
    let expected: Vec<(Vec<u8>, Vec<u8>)> = pairs
        .iter()
        .map(|(name, value)| (name.to_vec(), value.to_vec()))
        .collect();
    assert_eq!(decoded, expected);
}

/// The contents of the `FCGI_PARAMS` records of `records`, put together.
pub fn params_content(mut records: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    while records.len() >= 8 {
        let length = usize::from(u16::from_be_bytes([records[4], records[5]]));
        let padding = usize::from(records[6]);
        assert_eq!(records[1], super::kind::PARAMS);
        content.extend_from_slice(&records[8..8 + length]);
        records = &records[8 + length + padding..];
    }
    assert!(records.is_empty());
    content
}
