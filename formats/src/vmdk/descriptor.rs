//! The vmdk text descriptor: settings (`key = "value"`) and extent lines (`RW 2048 SPARSE
//! "file.vmdk"`), parsed strictly so that nothing naming another file or a parent slips by.

use super::error::VmdkError;
use super::limits::{MAX_DESCRIPTOR_BYTES, MAX_LISTED_FILES, MAX_QUOTED_LINE};

/// One extent line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    pub access: String,
    pub sectors: u64,
    /// FLAT, SPARSE, ZERO, VMFS, VMFSSPARSE, VMFSRDM, VMFSRAW (upper case).
    pub kind: String,
    /// The file holding the extent (absent for ZERO extents).
    pub file: Option<String>,
}

/// A parsed descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub create_type: Option<String>,
    pub parent_cid: Option<String>,
    pub parent_file_name_hint: Option<String>,
    pub extents: Vec<Extent>,
}

fn malformed(line_no: usize, line: &str, why: &str) -> VmdkError {
    let mut quoted: String = line.chars().take(MAX_QUOTED_LINE).collect();
    if quoted.len() < line.len() {
        quoted.push('…');
    }
    VmdkError::MalformedDescriptor(format!("line {line_no} ({quoted:?}): {why}"))
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

impl Descriptor {
    /// Parses descriptor text (up to its first NUL: embedded descriptors are padded).
    pub fn parse(bytes: &[u8]) -> Result<Descriptor, VmdkError> {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        if end as u64 > MAX_DESCRIPTOR_BYTES {
            return Err(VmdkError::MalformedDescriptor(format!(
                "{end} bytes, over the limit of {MAX_DESCRIPTOR_BYTES}"
            )));
        }
        let text = std::str::from_utf8(&bytes[..end])
            .map_err(|e| VmdkError::MalformedDescriptor(format!("not UTF-8 text: {e}")))?;
        let mut d = Descriptor::default();
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let first = line.split_whitespace().next().unwrap_or("");
            if ["RW", "RDONLY", "NOACCESS"]
                .iter()
                .any(|a| a.eq_ignore_ascii_case(first))
            {
                d.extents.push(parse_extent(i + 1, line)?);
            } else if let Some((key, value)) = line.split_once('=') {
                let value = unquote(value).to_string();
                match key.trim().to_ascii_lowercase().as_str() {
                    "createtype" => d.create_type = Some(value),
                    "parentcid" => d.parent_cid = Some(value),
                    "parentfilenamehint" => d.parent_file_name_hint = Some(value),
                    _ => {}
                }
            } else {
                return Err(malformed(i + 1, line, "neither a setting nor an extent"));
            }
        }
        Ok(d)
    }

    /// Refuses any link to a parent image.
    pub fn check_no_parent(&self) -> Result<(), VmdkError> {
        let mut links = Vec::new();
        if let Some(cid) = &self.parent_cid
            && !cid.eq_ignore_ascii_case("ffffffff")
        {
            links.push(format!("parentCID={cid}"));
        }
        if let Some(hint) = &self.parent_file_name_hint {
            links.push(format!("parentFileNameHint={hint:?}"));
        }
        if links.is_empty() {
            Ok(())
        } else {
            Err(VmdkError::ParentLink {
                link: links.join(", "),
            })
        }
    }

    /// The files the extents name, quoted for a message.
    pub fn files(&self) -> String {
        let names: Vec<String> = self
            .extents
            .iter()
            .filter_map(|e| e.file.as_ref().map(|f| format!("{f:?}")))
            .collect();
        let mut listed = names
            .iter()
            .take(MAX_LISTED_FILES)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > MAX_LISTED_FILES {
            listed.push_str(&format!(" and {} more", names.len() - MAX_LISTED_FILES));
        }
        if listed.is_empty() {
            listed = "no file".into();
        }
        listed
    }

    pub fn create_type(&self) -> &str {
        self.create_type.as_deref().unwrap_or("no createType")
    }
}

fn parse_extent(line_no: usize, line: &str) -> Result<Extent, VmdkError> {
    let mut rest = line;
    let mut word = || -> Option<String> {
        let t = rest.trim_start();
        let end = t.find(char::is_whitespace).unwrap_or(t.len());
        let (w, r) = t.split_at(end);
        rest = r;
        (!w.is_empty()).then(|| w.to_string())
    };
    let access = word().unwrap_or_default().to_ascii_uppercase();
    let sectors = word()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| malformed(line_no, line, "the extent size is not a number"))?;
    let kind = word()
        .ok_or_else(|| malformed(line_no, line, "the extent has no type"))?
        .to_ascii_uppercase();
    let tail = rest.trim();
    let file = if tail.is_empty() {
        None
    } else {
        let quoted = tail
            .strip_prefix('"')
            .and_then(|t| t.split_once('"'))
            .ok_or_else(|| malformed(line_no, line, "the extent's file name is not quoted"))?;
        let after = quoted.1.trim();
        if !after.is_empty() && after.parse::<u64>().is_err() {
            return Err(malformed(
                line_no,
                line,
                "unexpected text after the file name",
            ));
        }
        Some(quoted.0.to_string())
    };
    let known = [
        "FLAT",
        "SPARSE",
        "ZERO",
        "VMFS",
        "VMFSSPARSE",
        "VMFSRDM",
        "VMFSRAW",
    ];
    if !known.contains(&kind.as_str()) {
        return Err(malformed(line_no, line, "unknown extent type"));
    }
    if kind != "ZERO" && file.is_none() {
        return Err(malformed(line_no, line, "the extent names no file"));
    }
    Ok(Extent {
        access,
        sectors,
        kind,
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU_STREAM: &str = "# Disk DescriptorFile\nversion=1\nCID=833dd3ff\n\
        parentCID=ffffffff\ncreateType=\"streamOptimized\"\n\n# Extent description\n\
        RW 12288 SPARSE \"disk.vmdk\"\n\n# The Disk Data Base\n#DDB\n\n\
        ddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n";

    #[test]
    fn qemus_descriptor_parses() {
        let d = Descriptor::parse(QEMU_STREAM.as_bytes()).expect("parses");
        assert_eq!(d.create_type.as_deref(), Some("streamOptimized"));
        assert_eq!(
            d.extents,
            vec![Extent {
                access: "RW".into(),
                sectors: 12288,
                kind: "SPARSE".into(),
                file: Some("disk.vmdk".into()),
            }]
        );
        assert_eq!(d.check_no_parent(), Ok(()));
    }

    #[test]
    fn parent_links_are_refused() {
        let text = QEMU_STREAM.replace("parentCID=ffffffff", "parentCID=1234abcd");
        let d = Descriptor::parse(text.as_bytes()).expect("parses");
        assert!(matches!(
            d.check_no_parent(),
            Err(VmdkError::ParentLink { link }) if link == "parentCID=1234abcd"
        ));
        let text = format!("{QEMU_STREAM}parentFileNameHint=\"base.vmdk\"\n");
        let d = Descriptor::parse(text.as_bytes()).expect("parses");
        assert!(matches!(
            d.check_no_parent(),
            Err(VmdkError::ParentLink { .. })
        ));
    }

    #[test]
    fn flat_extents_with_offsets_and_zero_extents_parse() {
        let d =
            Descriptor::parse(b"RW 2048 FLAT \"a-flat.vmdk\" 0\nRDONLY 10 ZERO\n").expect("parses");
        assert_eq!(d.extents.len(), 2);
        assert_eq!(d.extents[1].file, None);
        assert_eq!(d.files(), "\"a-flat.vmdk\"");
    }

    #[test]
    fn malformed_lines_are_refused() {
        for text in [
            "RW many SPARSE \"x\"\n",
            "RW 10 SPARSE x.vmdk\n",
            "RW 10 WEIRD \"x\"\n",
            "RW 10 FLAT\n",
            "what is this\n",
            "RW 10 FLAT \"x\" junk\n",
        ] {
            assert!(
                matches!(
                    Descriptor::parse(text.as_bytes()),
                    Err(VmdkError::MalformedDescriptor(_))
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn text_after_a_nul_is_padding() {
        let mut bytes = QEMU_STREAM.as_bytes().to_vec();
        bytes.extend_from_slice(b"\0garbage that is not a descriptor line\n");
        assert!(Descriptor::parse(&bytes).is_ok());
    }
}
