//! Finding repeated ids in a file of any size, in bounded memory.
//!
//! Files of lines (transactions, interactions) can hold tens of millions of
//! ids, too many to keep. Most files list their ids in increasing order (the
//! reference data does): then no id can repeat and nothing is kept beyond
//! the last id. Otherwise each id's 64-bit fingerprint and line are kept in
//! runs of bounded size, each run sorted and spilled to a temporary file,
//! and the runs are merged at the end: equal fingerprints name the lines that
//! may repeat an id, which the caller confirms by reading those lines again.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};

/// A fingerprint and its line, as read back from a run.
type Entry = std::io::Result<(u64, u64)>;

/// Fingerprints kept in memory before a run is spilled (16 bytes each).
const RUN_LEN: usize = 2 << 20;

pub(crate) struct DuplicateFinder {
    last: Option<String>,
    increasing: bool,
    run: Vec<(u64, u64)>,
    spilled: Vec<std::fs::File>,
}

impl DuplicateFinder {
    pub(crate) fn new() -> DuplicateFinder {
        DuplicateFinder {
            last: None,
            increasing: true,
            run: Vec::new(),
            spilled: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, id: &str, line: u64) -> std::io::Result<()> {
        if self.increasing {
            match &mut self.last {
                Some(last) if id > last.as_str() => {
                    last.clear();
                    last.push_str(id);
                }
                Some(_) => self.increasing = false,
                None => self.last = Some(id.to_owned()),
            }
        }
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        self.run.push((hasher.finish(), line));
        if self.run.len() == RUN_LEN {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        self.run.sort_unstable();
        let mut file = BufWriter::new(tempfile::tempfile()?);
        for (hash, line) in self.run.drain(..) {
            file.write_all(&hash.to_le_bytes())?;
            file.write_all(&line.to_le_bytes())?;
        }
        let mut file = file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        self.spilled.push(file);
        Ok(())
    }

    /// Groups of lines whose ids may be equal (equal fingerprints), each
    /// group in line order; empty when the ids were increasing.
    pub(crate) fn finish(mut self) -> std::io::Result<Vec<Vec<u64>>> {
        if self.increasing {
            return Ok(Vec::new());
        }
        self.run.sort_unstable();
        let mut sources: Vec<Box<dyn Iterator<Item = Entry>>> = Vec::new();
        for file in self.spilled.drain(..) {
            sources.push(Box::new(RunReader(BufReader::new(file))));
        }
        sources.push(Box::new(std::mem::take(&mut self.run).into_iter().map(Ok)));
        let mut heap = BinaryHeap::new();
        for (i, source) in sources.iter_mut().enumerate() {
            if let Some(item) = source.next() {
                heap.push(Reverse((item?, i)));
            }
        }
        let mut groups = Vec::new();
        let mut current: Option<(u64, Vec<u64>)> = None;
        while let Some(Reverse(((hash, line), i))) = heap.pop() {
            if let Some(item) = sources[i].next() {
                heap.push(Reverse((item?, i)));
            }
            match &mut current {
                Some((h, lines)) if *h == hash => lines.push(line),
                _ => {
                    if let Some((_, lines)) = current.take()
                        && lines.len() > 1
                    {
                        groups.push(lines);
                    }
                    current = Some((hash, vec![line]));
                }
            }
        }
        if let Some((_, lines)) = current
            && lines.len() > 1
        {
            groups.push(lines);
        }
        for group in &mut groups {
            group.sort_unstable();
        }
        Ok(groups)
    }
}

struct RunReader(BufReader<std::fs::File>);

impl Iterator for RunReader {
    type Item = Entry;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = [0u8; 16];
        match self.0.read_exact(&mut buf) {
            Ok(()) => Some(Ok((
                u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")),
                u64::from_le_bytes(buf[8..].try_into().expect("8 bytes")),
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increasing_ids_keep_nothing() {
        let mut finder = DuplicateFinder::new();
        for i in 0..1000 {
            finder.add(&format!("T{i:06}"), i + 2).unwrap();
        }
        assert!(finder.finish().unwrap().is_empty());
    }

    #[test]
    fn repeats_are_found_across_spilled_runs() {
        let mut finder = DuplicateFinder::new();
        // More ids than one run holds, in decreasing order, with two repeats.
        let n = RUN_LEN as u64 + 10;
        for i in (0..n).rev() {
            finder.add(&format!("T{i}"), n - i + 1).unwrap();
        }
        finder.add("T7", n + 2).unwrap();
        finder.add(&format!("T{}", n - 1), n + 3).unwrap();
        let mut groups = finder.finish().unwrap();
        groups.sort();
        // T{n-1} was added first (line 2), T7 at line n - 7 + 1.
        assert_eq!(groups, vec![vec![2, n + 3], vec![n - 6, n + 2]]);
    }
}
